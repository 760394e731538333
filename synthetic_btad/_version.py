"""The synthetic_btad format version written into every dataset summary."""

__version__ = "0.1.0"
