"""visrec: visual product recommendations for Django shops."""

__version__ = "0.1.0"
