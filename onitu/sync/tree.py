"""The paths of each folder in sorted order, for "everything below this directory" without a scan of the folder.

Every path below ``d`` sorts between ``d/`` and ``d0`` (``0`` follows ``/``), so the paths below a directory are one
slice found by bisection. New paths are merged in lazily, before the next query; paths that disappear are left in
place (a query checks what it finds against the live tables) until they are many.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable


class Tree:
    """Sorted paths per folder, with the paths added since the last query kept apart until then."""

    def __init__(self) -> None:
        self._sorted: dict[str, list[str]] = defaultdict(list)
        self._added: dict[str, set[str]] = defaultdict(set)

    def add(self, folder: str, path: str) -> None:
        """A path that may be new."""
        self._added[folder].add(path)

    def below(self, folder: str, directory: str, alive: Callable[[str], bool]) -> list[str]:
        """The paths strictly below ``directory`` for which ``alive`` holds."""
        paths = self._merged(folder, alive)
        start = bisect.bisect_left(paths, directory + "/")
        end = bisect.bisect_left(paths, directory + "0", start)
        return [p for p in paths[start:end] if alive(p)]

    def _merged(self, folder: str, alive: Callable[[str], bool] | None) -> list[str]:
        paths, added = self._sorted[folder], self._added.pop(folder, None)
        if added:
            fresh = sorted(added.difference(_present(paths, added)))
            if len(fresh) < 64:
                for path in fresh:
                    index = bisect.bisect_left(paths, path)
                    if index == len(paths) or paths[index] != path:
                        paths.insert(index, path)
            else:
                paths = self._sorted[folder] = sorted(paths + fresh)  # two sorted runs, no duplicates: a merge
                if alive is not None and len(paths) > 1024:  # rebuilt anyway: drop the dead, if they are many
                    live = [p for p in paths if alive(p)]
                    if len(live) < len(paths) // 2:
                        paths = self._sorted[folder] = live
        return paths

    def settle(self) -> None:
        """Merge in the paths added since the last query (a set of them costs more than their place in a list)."""
        for folder in list(self._added):
            self._merged(folder, None)


def _present(paths: list[str], candidates: Iterable[str]) -> set[str]:
    """The candidates already in the sorted ``paths``."""
    found = set()
    for path in candidates:
        index = bisect.bisect_left(paths, path)
        if index < len(paths) and paths[index] == path:
            found.add(path)
    return found
