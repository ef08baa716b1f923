"""Kopf handlers. Importing this package registers them; each module stays thin."""

from . import lifecycle, network

__all__ = ["lifecycle", "network"]
