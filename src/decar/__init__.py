"""decar: DECAR deep-clustering audio representations."""

__version__ = "0.1.0"
