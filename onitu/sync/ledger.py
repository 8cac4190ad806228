"""What the hub agreed, kept in the space: per folder and path the agreed :class:`FileMeta` (tombstones included),
and per service the version it holds.

The referee keeps a copy in memory and changes both together: :class:`Ledger` methods return the space operations
that make a change (to be sent in one atomic ``batch`` with the orders it goes with) and apply it in memory once
:meth:`commit` succeeded. A held version equal to the agreed one is the same object, so memory grows with the
number of files, not with files times services.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from onitu.sync import wire
from onitu.sync.metadata import FileMeta

log = logging.getLogger(__name__)

BATCH = 512  # operations per atomic batch


class Ledger:
    """Agreed and held versions, mirrored from the space."""

    def __init__(self) -> None:
        self.agreed: dict[str, dict[str, FileMeta]] = defaultdict(dict)
        self.held: dict[tuple[str, str], dict[str, FileMeta]] = defaultdict(dict)  # (service, folder) -> path -> meta
        self._ops: list[tuple[Any, list[tuple]]] = []  # (key, group): the groups of one key go in the same batch
        self._apply: list[tuple[dict, str, FileMeta | None]] = []
        self._agreeing: dict[tuple[str, str], FileMeta] = {}  # agreed versions recorded, not yet committed

    def load(self, space: Any) -> None:
        """Read everything from the space, dropping (and logging) tuples that do not check."""
        for _, folder, path, value in space.read_all((wire.META, None, None, None)):
            meta = self._parse(folder, path, value)
            if meta is not None:
                self.agreed[folder][path] = meta
        for _, service, folder, path, value in space.read_all((wire.HELD, None, None, None, None)):
            meta = self._parse(folder, path, value, service)
            if meta is not None:
                agreed = self.agreed[folder].get(path)
                self.held[service, folder][path] = agreed if agreed == meta else meta

    @staticmethod
    def _parse(folder: Any, path: Any, value: Any, service: Any = "") -> FileMeta | None:
        try:
            if not isinstance(folder, str) or not isinstance(service, str):
                raise ValueError("folder and service must be text")
            meta = FileMeta.from_wire(value)
            if meta.path != path:
                raise ValueError(f"metadata of {meta.path!r} stored under {path!r:.80}")
            return meta
        except ValueError as exc:
            log.warning("ignoring a corrupt sync record for %s %s: %s", service or "folder", folder, exc)
            return None

    # -- changes: recorded, then committed together ---------------------------------------------------------------

    def agree(self, folder: str, meta: FileMeta) -> None:
        """Make ``meta`` the agreed version of its path."""
        table = self.agreed[folder]
        group: list[tuple] = [("take", (wire.META, folder, meta.path, None))] if meta.path in table else []
        group.append(("write", (wire.META, folder, meta.path, meta.to_wire()), None))
        self._ops.append(((folder, meta.path), group))
        self._apply.append((table, meta.path, meta))
        self._agreeing[folder, meta.path] = meta

    def latest(self, folder: str, path: str) -> FileMeta | None:
        """The agreed version of ``path``, counting the changes recorded and not committed yet (the version the
        orders sent with them bring about)."""
        return self._agreeing.get((folder, path)) or self.agreed[folder].get(path)

    def hold(self, service: str, folder: str, path: str, meta: FileMeta | None) -> None:
        """Record that ``service`` holds ``meta`` at ``path`` (None: nothing, or a deletion)."""
        table = self.held[service, folder]
        current = table.get(path)
        if current == meta or (current is None and (meta is None or meta.tombstone)):
            return
        group: list[tuple] = [("take", (wire.HELD, service, folder, path, None))] if current is not None else []
        if meta is not None and not meta.tombstone:
            group.append(("write", (wire.HELD, service, folder, path, meta.to_wire()), None))
        else:
            meta = None
        self._ops.append(((folder, path), group))
        self._apply.append((table, path, meta))

    def also(self, ops: Iterable[tuple], key: tuple[str, str] | None = None) -> None:
        """Space operations to send with the recorded changes (orders, conflict records); ``key``: the (folder,
        path) they are about, to be committed together with its other changes."""
        self._ops.extend((key, [op]) for op in ops)

    def commit(self, space: Any) -> None:
        """Send the recorded operations and apply the changes in memory.

        Batches hold about :data:`BATCH` operations, and everything recorded about one path (its agreed version, the
        versions replicas hold, the orders about it) goes in the same batch, in the order it was recorded: a referee
        killed half-way through a commit leaves each path as it was or as decided, never agreed on a version that
        no replica is recorded holding.
        """
        groups, apply = self._ops, self._apply
        self._ops, self._apply, self._agreeing = [], [], {}
        by_key: dict[Any, list[tuple]] = {}
        for n, (key, group) in enumerate(groups):
            by_key.setdefault(n if key is None else key, []).extend(group)
        batch: list[tuple] = []
        for ops in by_key.values():
            if batch and len(batch) + len(ops) > BATCH:
                space.batch(batch)
                batch = []
            batch.extend(ops)
        if batch:
            space.batch(batch)
        for table, path, meta in apply:
            if meta is None:
                table.pop(path, None)
            else:
                table[path] = meta

    def holding(self, service: str, folder: str) -> int:
        """How many entries ``service`` holds in ``folder``."""
        return len(self.held.get((service, folder), ()))
