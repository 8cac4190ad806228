"""Paths in sorted order, for "everything below this directory" without a scan of every path.

Every path below ``d`` sorts between ``d/`` and ``d0`` (``0`` follows ``/``), so the paths below a directory are one
slice found by bisection. New paths are merged in lazily, before the next query or once they are many; paths that
disappear are left in place (a query checks what it finds against the live table) until the list has doubled.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping

from onitu.fairsort import fair_sorted
from onitu.sync.decide.plan import Observed

MERGE_AT = 4096  # paths added, unqueried, before they are merged anyway (a set of them costs more than a list)


class SortedPaths:
    """One folder's paths, sorted, with the paths added since the last merge kept apart until then."""

    def __init__(self, paths: Iterable[str] = (), exists: Callable[[str], bool] | None = None) -> None:
        """``exists``: whether a path still exists at all, to drop the gone when the list is rebuilt. Only the
        owner's own test of existence: a caller's narrower test (held by one service) would drop paths that other
        queries still want, and nothing would add them back while they do not change."""
        self._sorted: list[str] = fair_sorted(paths)
        self._added: set[str] = set()
        self._exists = exists
        self._checked = 0  # paths in the list when the gone were last dropped

    def add(self, path: str) -> None:
        """A path that may be new."""
        self._added.add(path)
        if len(self._added) >= MERGE_AT:
            self.settle()

    def below(self, directory: str, alive: Callable[[str], bool]) -> list[str]:
        """The paths strictly below ``directory`` ('' for the top: every path) for which ``alive`` holds."""
        paths = self.settle()
        if not directory:
            return [p for p in paths if p and alive(p)]
        start = bisect.bisect_left(paths, directory + "/")
        end = bisect.bisect_left(paths, directory + "0", start)
        return [p for p in paths[start:end] if alive(p)]

    def children(self, directory: str, alive: Callable[[str], bool]) -> list[str]:
        """The paths directly in ``directory`` ('' for the top) for which ``alive`` holds, sorted; each deeper
        subtree met is skipped by bisection, so the cost follows the directory's entries, not the folder's. (Paths
        ``alive`` refuses stay: the referee's other queries may still want them.)"""
        paths = self.settle()
        prefix = f"{directory}/" if directory else ""
        at = bisect.bisect_left(paths, prefix) if prefix else 0
        end = bisect.bisect_left(paths, directory + "0", at) if prefix else len(paths)
        found = []
        while at < end:
            path = paths[at]
            slash = path.find("/", len(prefix))
            if slash >= 0:  # below a child directory: jump past everything below it
                at = bisect.bisect_left(paths, path[:slash] + "0", at, end)
                continue
            if path and alive(path):
                found.append(path)
            at += 1
        return found

    def settle(self) -> list[str]:
        """Merge in the paths added since (dropping the gone, if they are many); the sorted list."""
        added, self._added = self._added, set()
        if not added:
            return self._sorted
        paths = self._sorted
        fresh = fair_sorted(added.difference(_present(paths, added)))
        if len(fresh) < 64:
            for path in fresh:
                paths.insert(bisect.bisect_left(paths, path), path)
            return paths
        paths = self._sorted = sorted(paths + fresh)  # two sorted runs, no duplicates: a merge
        # Drop the gone once the list has doubled since they were last dropped: a look at every path (the referee's
        # look is a few table lookups) costs then a few per path added, not a million per rebuild.
        if self._exists is not None and len(paths) > max(1024, 2 * self._checked):
            paths = self._sorted = [p for p in paths if self._exists(p)]
            self._checked = len(paths)
        return paths


class Tree:
    """Sorted paths per folder."""

    def __init__(self, exists: Callable[[str, str], bool]) -> None:
        """``exists(folder, path)``: whether the owner still knows a path at all (gone ones are dropped when a
        folder's list is rebuilt, and added again if they come back)."""
        self._exists = exists
        self._folders: dict[str, SortedPaths] = {}

    def add(self, folder: str, path: str) -> None:
        """A path of ``folder`` that may be new."""
        paths = self._folders.get(folder)
        if paths is None:
            paths = self._folders[folder] = SortedPaths(exists=lambda path: self._exists(folder, path))
        paths.add(path)

    def below(self, folder: str, directory: str, alive: Callable[[str], bool]) -> list[str]:
        """The paths of ``folder`` strictly below ``directory`` for which ``alive`` holds."""
        paths = self._folders.get(folder)
        return [] if paths is None else paths.below(directory, alive)

    def children(self, folder: str, directory: str, alive: Callable[[str], bool]) -> list[str]:
        """The paths of ``folder`` directly in ``directory`` for which ``alive`` holds."""
        paths = self._folders.get(folder)
        return [] if paths is None else paths.children(directory, alive)

    def settle(self) -> None:
        """Merge in the paths added since the last query."""
        for paths in self._folders.values():
            paths.settle()


class Indexed(dict[str, Observed]):
    """What a plug last reported per path, with the paths kept sorted for :meth:`at_and_below`. Set entries
    with ``table[path] = value`` (or build it from a mapping): ``update`` and ``setdefault`` would bypass the index."""

    def __init__(self, entries: Mapping[str, Observed] | None = None) -> None:
        super().__init__(entries or {})
        self.paths = SortedPaths(self, self.__contains__)

    def __setitem__(self, path: str, value: Observed) -> None:
        if path not in self:
            self.paths.add(path)
        super().__setitem__(path, value)

    def at_and_below(self, path: str) -> list[str]:
        """``path`` (if present) and every present path below it: no look at the index for a file, which is most
        of what is deleted (a query merges the paths added since)."""
        entry = self.get(path)
        if entry is not None and entry.kind == "file":
            return [path]
        return ([path] if entry is not None else []) + self.paths.below(path, self.__contains__)


def _present(paths: list[str], candidates: Iterable[str]) -> set[str]:
    """The candidates already in the sorted ``paths``."""
    found = set()
    for path in candidates:
        index = bisect.bisect_left(paths, path)
        if index < len(paths) and paths[index] == path:
            found.add(path)
    return found
