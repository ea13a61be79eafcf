"""Swapline: site personalisation and call tracking."""

__version__ = "0.1.0"
