"""Kopf handlers. Importing this package registers them; each module stays thin."""

from . import commerce, lifecycle, network

__all__ = ["commerce", "lifecycle", "network"]
