"""What a driver would not or could not sync, and why: the skipped map that ``onitu status --skipped`` shows.

A driver notes each entry of its replica it leaves out (a name that cannot be synced faithfully, a symbolic link, a
FIFO or device, an entry it may not read) and each write it refused (a parent that resolves outside the root), by
service path with a reason. Nothing is silent: the first sighting of each path is logged once, and the plug
publishes the whole map for the hub's status. Entries found by listing are replaced by each listing of their
directory tree (so a file made readable, renamed or removed leaves the map); a refused write stays until a write
to that path succeeds.

It also carries the names a driver *set aside*: a second entry whose name maps to a path another entry already has
(``café.txt`` composed and decomposed) is renamed on disk to a conflict copy, and the plug tells the referee.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

LIMIT = 10_000  # entries kept (a replica full of unsyncable names must not grow the plug's memory without bound)
@dataclass(slots=True)
class Entry:
    """One skipped path: why, since when (epoch seconds), whether it is an unreadable entry (its last known state
    stands meanwhile: it is not gone), a refused write, and how many times it was met."""

    reason: str
    since: float
    unreadable: bool = False
    refused: bool = False
    count: int = 1


class Skipped:
    """The skipped paths of one service (thread-safe: the watcher, the plug and the copy threads all add to it)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._entries: dict[str, Entry] = {}
        self._set_aside: list[tuple[str, str]] = []  # (conflict copy, original path) not yet told to the referee
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set on every change, cleared by whoever publishes the map

    def add(self, path: str, reason: str, *, unreadable: bool = False, refused: bool = False) -> None:
        """Note ``path`` as skipped for ``reason`` (logged the first time, or when the reason changes)."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry.reason == reason:
                entry.count += 1
                return
            if entry is None and len(self._entries) >= LIMIT:
                return
            self._entries[path] = Entry(reason, time.time(), unreadable, refused)
            self.changed.set()
        log.warning("%s: skipping %s: %s", self.service, path, reason)

    def discard(self, path: str, *, refused: bool = True) -> None:
        """``path`` is fine now (synced, or gone); with ``refused`` False, a refused write there stays noted."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and (refused or not entry.refused):
                del self._entries[path]
                self.changed.set()

    def listed(self, prefix: str, found: dict[str, tuple[str, bool]]) -> None:
        """A listing of ``prefix`` ('' for all) found these (path -> (reason, unreadable)): they replace what earlier
        listings found there (refused writes stay)."""
        below = prefix + "/" if prefix else ""
        with self._lock:
            stale = [p for p, e in self._entries.items() if not e.refused and p.startswith(below) and p not in found]
            for path in stale:
                del self._entries[path]
            if stale:
                self.changed.set()
        for path, (reason, unreadable) in found.items():
            self.add(path, reason, unreadable=unreadable)

    def unreadable(self, path: str) -> bool:
        """Whether ``path`` or a directory above it could not be read (what is known of it still stands)."""
        with self._lock:
            if not any(e.unreadable for e in self._entries.values()):
                return False
            while True:
                entry = self._entries.get(path)
                if entry is not None and entry.unreadable:
                    return True
                if "/" not in path:
                    return False
                path = path.rpartition("/")[0]

    def unreadable_paths(self) -> list[str]:
        """The entries that could not be read."""
        with self._lock:
            return [p for p, e in self._entries.items() if e.unreadable]

    def set_aside(self, conflict: str, original: str) -> None:
        """An entry was renamed to ``conflict``: its name collided with ``original``'s."""
        with self._lock:
            self._set_aside.append((conflict, original))
            self.changed.set()

    def take_set_aside(self) -> list[tuple[str, str]]:
        """The (conflict copy, original) renamed since the last call."""
        with self._lock:
            found, self._set_aside = self._set_aside, []
            return found

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Path -> ``{reason, since, count}`` (and ``refused``/``unreadable`` when true), for publishing."""
        with self._lock:
            return {path: {"reason": e.reason, "since": round(e.since, 3), "count": e.count,
                           **({"refused": True} if e.refused else {}),
                           **({"unreadable": True} if e.unreadable else {})}
                    for path, e in self._entries.items()}
