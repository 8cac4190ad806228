"""What each replica has now, as its plug last reported it: the referee's side of the plugs' listings.

Kept compact, because it covers every file of every replica: per folder and path, a bit mask of the services whose
entry has the agreed content (a replica in sync costs one bit), and the other entries apart. Only what decisions use
is kept: kind, hash, size and modification time; the fingerprint stays with the plug, which turns the content an
order was decided on back into it (see :meth:`onitu.sync.plan.Observed.guard`).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterator

from onitu.sync.ledger import Ledger
from onitu.sync.metadata import FileMeta
from onitu.sync.plan import Observed, content_of


def observed(meta: FileMeta) -> Observed:
    """An agreed version as a replica's entry."""
    return Observed(meta.kind, meta.sha256, meta.size, meta.mtime_ns)


class Mirror:
    """Every replica's current entries, next to the ledger's agreed versions."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.same: dict[str, dict[str, int]] = defaultdict(dict)  # folder -> path -> services with agreed content
        self.other: dict[tuple[str, str], dict[str, Observed]] = defaultdict(dict)  # (service, folder) -> path

    def get(self, service: str, folder: str, path: str) -> Observed | None:
        """What ``service`` has at ``path`` (None: nothing)."""
        if self.same[folder].get(path, 0) & self.ledger.bit(service):
            return observed(self.ledger.agreed[folder][path])
        return self.other.get((service, folder), {}).get(path)

    def set(self, service: str, folder: str, path: str, obs: Observed | None) -> bool:
        """Record what ``service`` has at ``path`` now; whether its content changed."""
        before = self.get(service, folder, path)
        bit, same = self.ledger.bit(service), self.same[folder]
        mask = same.get(path, 0)
        if mask & bit:
            mask &= ~bit
            if mask:
                same[path] = mask
            else:
                del same[path]
        other = self.other[service, folder]
        other.pop(path, None)
        if obs is not None:
            agreed = self.ledger.agreed[folder].get(path)
            if agreed is not None and content_of(agreed) == obs.content:
                same[agreed.path] = same.get(agreed.path, 0) | bit  # the ledger's string for the path
            else:
                other[path] = Observed(obs.kind, obs.sha256, obs.size, obs.mtime_ns)
        return content_of(before) != content_of(obs)

    def paths(self, service: str, folder: str) -> Iterator[str]:
        """The paths where ``service`` has something."""
        bit = self.ledger.bit(service)
        yield from [p for p, mask in self.same[folder].items() if mask & bit]
        yield from list(self.other.get((service, folder), ()))

    def compact(self) -> None:
        """Give back the room of tables that shrank (dicts keep their largest size: a bulk copy passes through
        ``other`` before its files are agreed)."""
        for key, table in self.other.items():
            if sys.getsizeof(table) > 4096 and len(table) * 4 * 64 < sys.getsizeof(table):
                self.other[key] = dict(table)

    def known(self, folder: str) -> Iterator[str]:
        """The paths where some replica has something that is not agreed (what is, the ledger knows)."""
        for (_, f), table in self.other.items():
            if f == folder:
                yield from table

    def rebase(self, folder: str, path: str, old: FileMeta | None, new: FileMeta | None) -> None:
        """The agreed version of ``path`` changed: entries with the old content are no longer "the same"."""
        if content_of(old) == content_of(new):
            return
        same = self.same[folder]
        mask = same.pop(path, 0)
        if mask and old is not None:
            for service in self.ledger.services(mask):
                self.other[service, folder][path] = observed(old)
        if new is None or new.tombstone:
            return
        target = content_of(new)
        for (service, f), table in self.other.items():
            obs = table.get(path) if f == folder else None
            if obs is not None and obs.content == target:
                del table[path]
                mask = same.get(new.path, 0) | self.ledger.bit(service)
                same[new.path] = mask
