"""Sorting a million items without holding the GIL for seconds.

``list.sort`` compares in C and never lets another thread run meanwhile: a million paths take seconds to sort on a
busy machine, and all that time the thread answering the watchdog's heartbeats cannot answer, so the watchdog kills
the process as hung (a referee deciding a million new files, a plug listing them). :func:`fair_sorted` sorts big
inputs in slices short enough for the other threads to run between them, and merges the slices in Python
(``heapq.merge``), which lets them run as any Python loop does. Small inputs are just sorted.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

SLICE = 32_768  # items sorted in one go: tens of milliseconds


def fair_sorted(items: Iterable[T], key: Callable[[T], Any] | None = None) -> list[T]:
    """``sorted(items, key=key)`` (as stable), without holding the GIL for more than a slice's sort."""
    items = list(items)
    if len(items) <= SLICE:
        return sorted(items, key=key)  # type: ignore[type-var, arg-type]
    runs = [sorted(items[i:i + SLICE], key=key) for i in range(0, len(items), SLICE)]  # type: ignore[type-var, arg-type]
    del items
    return list(heapq.merge(*runs, key=key))


def tree_order(path: str) -> str:
    """A sort key putting every path right after its directory, before the paths beside it (``a``, ``a/b``,
    ``a-c``): the order of ``path.split("/")``, as one string (NUL sorts before any character a name may hold),
    which sorts faster and holds a tenth of the memory."""
    return path.replace("/", "\0")
