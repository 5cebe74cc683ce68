"""churnsense: which customers are about to leave, why, and what to do about it."""

__version__ = "0.1.0"
