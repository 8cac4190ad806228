"""Giving memory back to the system after a burst of work.

A long-lived process that handled a burst (a referee deciding 100,000 new files) keeps the C heap's freed memory
mapped: glibc returns it only from the top of the heap unless asked. :func:`give_back` asks (``malloc_trim``); on a
C library without it, it does nothing. Python's own small-object arenas are returned by the interpreter when empty.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def give_back() -> bool:
    """Return the free memory of the C heap to the system; whether this C library can."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
