"""churnsense: which customers are about to leave, why, and what to do about it."""

from churnsense import config as _config  # noqa: F401  (registers the OmegaConf resolvers used in conf/)

__version__ = "0.1.0"
