"""What the hub agreed, kept in the space: per folder and path the agreed :class:`FileMeta` (tombstones included),
and which version each service holds.

One tuple per path, ``(META, "folder/path", record)`` (:mod:`onitu.sync.state.record`: the agreed version, the
services holding it, the other versions some services hold): replicas in sync cost a name each, not a tuple each.
The referee keeps a copy in memory, as compact: per folder an :class:`~onitu.sync.state.agreed.Agreed` table (each
path's agreed version and the bit mask of the services holding it, packed in one row), and apart the other versions
some services hold (they are rare).

Changes are recorded, then committed together (:meth:`Ledger.commit`): everything about one path (its record and
the orders about it) goes in one atomic batch, and memory is updated once the space has it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from msgpack import UnpackException

from onitu.drain import drained
from onitu.space.errors import SpaceError
from onitu.space.protocol import unpack_tuple
from onitu.sync import tuples
from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import content_of
from onitu.sync.state import record
from onitu.sync.state.agreed import Agreed

log = logging.getLogger(__name__)

BATCH = 512  # operations per atomic batch


@dataclass
class _Path:
    """A path's record while changes to it are recorded (before :meth:`Ledger.commit`)."""

    meta: FileMeta | None
    holders: int
    other: dict[str, FileMeta]


class Held(Mapping[str, FileMeta]):
    """What one service holds in one folder, path -> version: a view of the ledger (committed state)."""

    def __init__(self, ledger: Ledger, service: str, folder: str) -> None:
        self._ledger, self._folder, self._service = ledger, folder, service
        self._bit = ledger.bit(service)

    def __getitem__(self, path: str) -> FileMeta:
        ledger = self._ledger
        agreed = ledger.agreed[self._folder]
        if agreed.holders(path) & self._bit:
            return agreed[path]
        return ledger.other[self._service, self._folder][path]

    def __contains__(self, path: object) -> bool:
        ledger = self._ledger
        return bool(ledger.agreed[self._folder].holders(path) & self._bit) or \
            path in ledger.other.get((self._service, self._folder), ())  # type: ignore[operator]

    def __iter__(self) -> Iterator[str]:
        bit = self._bit
        yield from self._ledger.agreed[self._folder].held_by(bit)
        yield from list(self._ledger.other.get((self._service, self._folder), ()))

    def __len__(self) -> int:
        return self._ledger.counts.get((self._service, self._folder), 0)


class _HeldTables:
    """``ledger.held[service, folder]``: the :class:`Held` view of each service and folder."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __getitem__(self, key: tuple[str, str]) -> Held:
        return Held(self._ledger, *key)

    def get(self, key: tuple[str, str], default: Any = None) -> Held:
        return Held(self._ledger, *key)


class Ledger:
    """Agreed and held versions, mirrored from the space."""

    def __init__(self) -> None:
        self.agreed: dict[str, Agreed] = defaultdict(Agreed)
        self.other: dict[tuple[str, str], dict[str, FileMeta]] = defaultdict(dict)  # (service, folder) -> path
        self.counts: dict[tuple[str, str], int] = defaultdict(int)  # (service, folder) -> entries held
        # folder -> the paths where a service holds another version than the agreed one: most paths have none, and
        # finding that out by looking in every service's table, three times per path recorded, cost a twentieth of
        # the referee's work in a bulk sync
        self._others_at: dict[str, set[str]] = defaultdict(set)
        self.held = _HeldTables(self)
        self._bits: dict[str, int] = {}
        self._masks: dict[int, tuple[str, ...]] = {}  # mask -> its services (see services)
        self._pending: dict[tuple[str, str], _Path] = {}
        self._units: list[tuple[list[tuple[str, str]], list[tuple]]] = []  # (paths, operations), in order given
        # called when a path's agreed version changes in memory: (folder, path, before, after, the services that
        # matched the version before: see Agreed.matching)
        self.on_agreed: Callable[[str, str, FileMeta | None, FileMeta | None, int], None] | None = None

    def bit(self, service: str) -> int:
        """The bit standing for ``service`` in the holder masks (given on first use)."""
        found = self._bits.get(service)
        if found is None:
            found = self._bits[service] = 1 << len(self._bits)
            self._masks.clear()
        return found

    def services(self, mask: int) -> list[str]:
        """The services whose bits are set in ``mask``."""
        return list(self._services_of(mask))

    def _services_of(self, mask: int) -> tuple[str, ...]:
        found = self._masks.get(mask)
        if found is None:  # a few masks stand for a million paths: each is worked out once
            found = self._masks[mask] = tuple(service for service, bit in self._bits.items() if mask & bit)
        return found

    # -- loading --------------------------------------------------------------------------------------------------

    def load(self, space: Any) -> None:
        """Read everything from the space, dropping (and logging) records that do not check."""
        # packed: decoded at once, a million records take well over a gigabyte at each start; their bytes, 110 MB
        for body in drained(space.read_all((tuples.META, None, None), packed=True)):
            key = None
            try:
                _, key, stored = unpack_tuple(body)
                if not isinstance(key, str) or "/" not in key:
                    raise ValueError("not a folder/path key")
                folder, _, path = key.partition("/")  # the path is checked as the record's own path must equal it
                meta, holders, other = self._parse(path, stored)
            except (ValueError, TypeError, KeyError, SpaceError, UnpackException) as exc:
                log.warning("ignoring a corrupt sync record %r: %s", str(key)[:200], exc)
                continue
            self._install(folder, meta.path, _Path(meta, holders, other))

    def _parse(self, path: str, stored: Any) -> tuple[FileMeta, int, dict[str, FileMeta]]:
        meta, holders, versions = record.decode(path, stored)
        mask = 0
        for service in holders:
            mask |= self.bit(service)
        return meta, mask, versions

    # -- reading, with what is recorded and not committed yet -------------------------------------------------------

    def latest(self, folder: str, path: str) -> FileMeta | None:
        """The agreed version of ``path``, counting the changes recorded and not committed yet (the version the
        orders sent with them bring about)."""
        pending = self._pending.get((folder, path))
        return pending.meta if pending is not None else self.agreed[folder].get(path)

    def holds(self, service: str, folder: str, path: str) -> FileMeta | None:
        """The version ``service`` holds at ``path``, counting the changes recorded and not committed yet."""
        pending = self._pending.get((folder, path))
        if pending is None:
            return self.held[service, folder].get(path)
        return pending.meta if pending.holders & self.bit(service) else pending.other.get(service)

    def holding(self, service: str, folder: str) -> int:
        """How many entries ``service`` holds in ``folder``."""
        return self.counts.get((service, folder), 0)

    # -- changes: recorded, then committed together ---------------------------------------------------------------

    def _others(self, folder: str, path: str) -> dict[str, FileMeta]:
        """The versions other than the agreed one that services hold at ``path`` (committed state)."""
        if path not in self._others_at[folder]:
            return {}
        return {s: table[path] for (s, f), table in self.other.items() if f == folder and path in table}

    def _path(self, folder: str, path: str) -> _Path:
        pending = self._pending.get((folder, path))
        if pending is None:
            agreed = self.agreed[folder]
            pending = self._pending[folder, path] = _Path(agreed.get(path), agreed.holders(path),
                                                          self._others(folder, path))
        return pending

    def agree(self, folder: str, meta: FileMeta) -> None:
        """Make ``meta`` the agreed version of its path. The services that held the previous one hold this one if its
        bytes are the same, else they still hold the previous one."""
        pending = self._path(folder, meta.path)
        if pending.meta is not None and content_of(pending.meta) != content_of(meta):
            for service in self.services(pending.holders):
                pending.other[service] = pending.meta
            pending.holders = 0
        pending.meta = meta

    def hold(self, service: str, folder: str, path: str, meta: FileMeta | None) -> None:
        """Record that ``service`` holds ``meta`` at ``path`` (None: nothing, or a deletion)."""
        pending = self._path(folder, path)
        bit = self.bit(service)
        pending.holders &= ~bit
        pending.other.pop(service, None)
        if meta is None or meta.tombstone:
            return
        if content_of(meta) == content_of(pending.meta):
            pending.holders |= bit  # the same bytes, under an older version or time too: the agreed version, held
        else:
            pending.other[service] = meta

    def also(self, ops: Iterable[tuple], paths: Iterable[tuple[str, str]] = ()) -> None:
        """Space operations to send with the recorded changes (orders, conflict records); ``paths``: the (folder,
        path) they are about, whose records are committed in the same atomic batch as they are."""
        keys = list(paths)
        for key in keys:
            self._path(*key)
        self._units.append((keys, list(ops)))

    def commit(self, space: Any) -> None:
        """Send the recorded changes and apply them in memory.

        Batches hold about :data:`BATCH` operations. An operation given with :meth:`also` goes in the same batch as
        the records of its paths (a referee killed half-way through a commit leaves each path as it was or as
        decided, never agreed on a version that no replica is recorded holding), and operations go in the order they
        were given (a plug carries out orders in the order it reads them: a directory's content is deleted before
        the directory). Records that no operation is about go first.
        """
        pending, units = self._pending, self._units
        self._pending, self._units = {}, []
        claimed = {key for keys, _ in units for key in keys}
        groups = [self._record_ops(*key, change) for key, change in pending.items() if key not in claimed]
        for keys, ops in units:
            group = []
            for key in keys:
                if key in claimed:
                    claimed.discard(key)
                    group += self._record_ops(*key, pending[key])
            groups.append(group + ops)
        batch: list[tuple] = []
        for ops in groups:
            if batch and len(batch) + len(ops) > BATCH:
                space.batch(batch)
                batch = []
            batch.extend(ops)
        if batch:
            space.batch(batch)
        for (folder, path), change in pending.items():
            self._install(folder, path, change)

    def _record_ops(self, folder: str, path: str, change: _Path) -> list[tuple]:
        before = (self.agreed[folder].get(path), self.agreed[folder].holders(path), self._others(folder, path))
        if (change.meta, change.holders, change.other) == before:
            return []
        key = tuples.meta_key(folder, path)
        ops: list[tuple] = [("discard", (tuples.META, key, None))] if before[0] is not None else []
        if change.meta is not None:
            stored = record.encode(change.meta, self.services(change.holders), change.other)
            ops.append(("write", (tuples.META, key, stored), None))
        return ops

    def _install(self, folder: str, path: str, change: _Path) -> None:
        agreed = self.agreed[folder]
        before, matching = agreed.get(path), agreed.matching(path)
        self._count(folder, agreed.holders(path), -1)
        for service in self._others(folder, path):
            del self.other[service, folder][path]
            self.counts[service, folder] -= 1
        self._others_at[folder].discard(path)
        if change.meta is None:
            agreed.remove(path)
        else:
            self._install_meta(folder, change)
        if self.on_agreed is not None and before != change.meta:
            self.on_agreed(folder, path, before, change.meta, matching)

    def _install_meta(self, folder: str, change: _Path) -> None:
        assert change.meta is not None
        path = change.meta.path  # one string for the path in every table
        self.agreed[folder].put(change.meta, change.holders)
        self._count(folder, change.holders, 1)
        for service, meta in change.other.items():
            self.other[service, folder][path] = meta
            self.counts[service, folder] += 1
        if change.other:
            self._others_at[folder].add(path)

    def _count(self, folder: str, mask: int, step: int) -> None:
        for service in self._services_of(mask):
            self.counts[service, folder] += step
