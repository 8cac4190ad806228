"""Splitting the paths due for a decision into passes of bounded size.

A pass is one call to :func:`onitu.sync.reconcile.reconcile` and one batch of orders; bounding it keeps the
referee's memory and each batch in check when a whole tree arrives at once. What reconcile must see together stays
together: a directory with everything below it (a directory is decided with its content), and both sides of a
rename (seen apart, a rename would be a deletion plus a copy of everything it moved).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from onitu.sync.drivers.base import is_under


def split(paths: Sequence[str], renames: Iterable[tuple[str, str]], size: int) -> list[list[str]]:
    """``paths`` in passes of at most ``size`` paths, except where one tree (or renamed pair of trees) is larger:
    it then makes a pass of its own."""
    units: list[list[str]] = []  # a top path and everything below it, in tree order
    unit_of: dict[str, int] = {}
    for path in sorted(paths, key=lambda p: p.split("/")):
        if not units or not is_under(path, units[-1][0]):
            units.append([])
        units[-1].append(path)
        unit_of[path] = len(units) - 1
    joined = list(range(len(units)))  # union-find over units: the two sides of a rename join

    def find(i: int) -> int:
        while joined[i] != i:
            joined[i] = joined[joined[i]]
            i = joined[i]
        return i

    for src, dst in renames:
        if src in unit_of and dst in unit_of:
            a, b = find(unit_of[src]), find(unit_of[dst])
            joined[max(a, b)] = min(a, b)
    groups: dict[int, list[str]] = {}
    for i, unit in enumerate(units):
        groups.setdefault(find(i), []).extend(unit)
    passes: list[list[str]] = []
    for group in groups.values():
        if not passes or len(passes[-1]) + len(group) > size:
            passes.append([])
        passes[-1].extend(group)
    return passes
