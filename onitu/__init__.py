"""Onitu: a replicated tuple space, and the supervisor, distributed make and file-sync hub built on it."""

__version__ = "0.1.0"
