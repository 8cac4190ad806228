"""What each replica has now, as its plug last reported it: the referee's side of the plugs' listings.

Kept compact, because it covers every file of every replica: per folder and path, a bit mask of the services whose
entry has the agreed content (a replica in sync costs one bit, kept in the agreed table's row: see
:meth:`onitu.sync.state.agreed.Agreed.matching`), and the other entries apart. Only what decisions use
is kept: kind, hash, size and modification time; the fingerprint stays with the plug, which turns the content an
order was decided on back into it (see :meth:`onitu.sync.decide.plan.Observed.content_id`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import Observed, content_of
from onitu.sync.state.ledger import Ledger
from onitu.sync.state.observations import Observations


def observed(meta: FileMeta) -> Observed:
    """An agreed version as a replica's entry."""
    return Observed(meta.kind, meta.sha256, meta.size, meta.mtime_ns)


class Mirror:
    """Every replica's current entries, next to the ledger's agreed versions."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        # (service, folder) -> path -> entry, packed: a first sync holds every file of the source here until its
        # copies are agreed (a million, at 330 bytes each as objects: the referee's peak)
        self.other: dict[tuple[str, str], Observations] = defaultdict(Observations)

    def get(self, service: str, folder: str, path: str) -> Observed | None:
        """What ``service`` has at ``path`` (None: nothing)."""
        agreed = self.ledger.agreed[folder]
        if agreed.matching(path) & self.ledger.bit(service):
            return observed(agreed[path])
        table = self.other.get((service, folder))
        return None if table is None else table.get(path)

    def set(self, service: str, folder: str, path: str, obs: Observed | None) -> bool:
        """Record what ``service`` has at ``path`` now; whether its content changed."""
        before = self.get(service, folder, path)
        bit, agreed = self.ledger.bit(service), self.ledger.agreed[folder]
        mask = agreed.matching(path)
        if mask & bit:
            mask &= ~bit
            agreed.set_matching(path, mask)
        other = self.other[service, folder]
        other.discard(path)
        if obs is not None:
            meta = agreed.get(path)
            if meta is not None and content_of(meta) == obs.content:
                agreed.set_matching(path, mask | bit)
            else:
                other[path] = Observed(obs.kind, obs.sha256, obs.size, obs.mtime_ns)
        return content_of(before) != content_of(obs)

    def paths(self, service: str, folder: str) -> Iterator[str]:
        """The paths where ``service`` has something."""
        yield from list(self.ledger.agreed[folder].matched_by(self.ledger.bit(service)))
        yield from list(self.other.get((service, folder), ()))

    def lost_any(self, folder: str, paths: Iterable[str], services: Iterable[str]) -> bool:
        """Whether one of ``services`` has nothing now at one of ``paths`` where the ledger records it holding a
        version. Without that, those paths hold no rename and no deletion: in a first sync, none of them."""
        paths = list(paths)
        for service in services:
            held = self.ledger.held[service, folder]
            if len(held) and any(p in held and self.get(service, folder, p) is None for p in paths):
                return True
        return False

    def compact(self) -> None:
        """Give back the room of tables that shrank (dicts keep their largest size: a bulk copy passes through
        ``other`` before its files are agreed)."""
        for table in self.other.values():
            table.shrink()

    def known(self, folder: str) -> Iterator[str]:
        """The paths where some replica has something that is not agreed (what is, the ledger knows)."""
        for (_, f), table in self.other.items():
            if f == folder:
                yield from table

    def rebase(self, folder: str, path: str, old: FileMeta | None, new: FileMeta | None, matching: int) -> None:
        """The agreed version of ``path`` changed from ``old``, which the services of ``matching`` had: entries
        with the old content are no longer "the same", those with the new content are."""
        if content_of(old) == content_of(new):
            return  # the agreed table kept the matching services
        if matching and old is not None:
            for service in self.ledger.services(matching):
                self.other[service, folder][path] = observed(old)
        if new is None or new.tombstone:
            return
        target, mask = content_of(new), 0
        for (service, f), table in self.other.items():
            obs = table.get(path) if f == folder else None
            if obs is not None and obs.content == target:
                del table[path]
                mask |= self.ledger.bit(service)
        if mask:
            self.ledger.agreed[folder].set_matching(new.path, mask)
