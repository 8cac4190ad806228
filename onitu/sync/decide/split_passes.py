"""Splitting the paths due for a decision into passes of bounded size.

A pass is one call to :func:`onitu.sync.decide.reconcile.reconcile` and one batch of orders; bounding it keeps the
referee's memory and each batch in check when a whole tree arrives at once. What reconcile must see together stays
together: a directory that was deleted or replaced somewhere, with everything below it (what stays below it keeps it,
and its content goes before it), and both sides of a rename (seen apart, a rename would be a deletion plus a copy of
everything it moved). A directory that is new or unchanged may be decided before its content, in another pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from onitu.fairsort import fair_sorted, tree_order
from onitu.sync.drivers.contract import is_under


def split(paths: Sequence[str], renames: Iterable[tuple[str, str]], size: int,
          whole: Callable[[str], bool] = lambda path: True) -> list[list[str]]:
    """``paths`` in passes of at most ``size`` paths, except where one tree that must stay ``whole`` (or a renamed
    pair of trees) is larger: it then makes a pass of its own."""
    renames = list(renames)
    renamed = {path for pair in renames for path in pair}  # both sides of a rename stay whole too
    units: list[list[str]] = []  # a path, and everything below it if it must stay whole, in tree order
    unit_of: dict[str, int] = {}
    top: str | None = None  # the directory the current unit keeps whole
    for path in fair_sorted(paths, key=tree_order):
        if top is None or not is_under(path, top):
            units.append([])
            top = path if path in renamed or whole(path) else None
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
