"""A table of paths whose values are held packed, one row each, and rebuilt when read (:class:`PackedTable`).

The referee's agreed versions (:mod:`onitu.sync.state.agreed`) and a plug's reported entries
(:mod:`onitu.sync.plug.known`) cover every file of a replica: as objects, an entry costs three times its row.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from onitu.space.fitted import fitted

V = TypeVar("V")


class PackedTable(Mapping[str, V], Generic[V]):
    """path -> value, held as ``_rows[path]``; a subclass says how a row is read back (:meth:`_read`)."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[str, Any] = {}

    def _read(self, path: str, row: Any) -> V:
        raise NotImplementedError

    def __getitem__(self, path: str) -> V:
        return self._read(path, self._rows[path])

    def get(self, path: str, default: V | None = None) -> V | None:  # type: ignore[override]
        row = self._rows.get(path)
        return default if row is None else self._read(path, row)

    def __contains__(self, path: object) -> bool:
        return path in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def shrink(self) -> None:
        """Give back the room of a table that shrank (see :func:`onitu.space.fitted.fitted`)."""
        self._rows = fitted(self._rows)
