"""churnsense: which customers are about to leave, why, and what to do about it."""

import warnings

# PySpark 4.x warns on every Arrow/pandas call that it does not fully support pandas 3; the Spark engine hands
# Arrow batches to the same pandas scorer as the local engine (its test compares the rows), so the line is noise
# on every run's stderr.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support", category=FutureWarning)

from churnsense import config as _config  # noqa: E402, F401  (registers the OmegaConf resolvers used in conf/)

__version__ = "0.1.0"
