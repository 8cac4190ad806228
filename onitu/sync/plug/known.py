"""What a plug last reported per path of a folder (:class:`Known`): a table of :class:`Observed`, held packed (see
:mod:`onitu.sync.state.observations`), with the paths kept sorted for "this path and everything below it".
"""

from __future__ import annotations

from collections.abc import Mapping

from onitu.sync.decide.plan import Observed
from onitu.sync.state.observations import Observations
from onitu.sync.state.tree import SortedPaths


class Known(Observations):
    """path -> :class:`Observed`, packed, with the paths sorted for :meth:`at_and_below`."""

    __slots__ = ("paths",)

    def __init__(self, entries: Mapping[str, Observed] | None = None) -> None:
        super().__init__(entries)
        self.paths = SortedPaths(self._rows, self._rows.__contains__)

    def __setitem__(self, path: str, value: Observed) -> None:
        new = path not in self._rows
        super().__setitem__(path, value)
        if new:  # once in the table: a rebuild of the index that this add sets off keeps only the paths there
            self.paths.add(path)

    def at_and_below(self, path: str) -> list[str]:
        """``path`` (if present) and every present path below it: no look at the index for a file, which is most
        of what is deleted (a query merges the paths added since)."""
        entry = self.get(path)
        if entry is not None and entry.kind == "file":
            return [path]
        return ([path] if entry is not None else []) + self.paths.below(path, self._rows.__contains__)
