"""Deciding: from what replicas hold to the orders that make them agree (no I/O, no space)."""
