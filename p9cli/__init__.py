"""p9: market context for crypto trading bots."""

__version__ = "0.1.0"
