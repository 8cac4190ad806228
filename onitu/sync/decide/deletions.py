"""How the referee sees a replica's deletions over time, so that a mass deletion is judged whole.

Two things: a replica that is deleting (``rm -r`` reported in pieces, a sync client emptying a folder) has everything
it reports held back until its deletions pause for :data:`SETTLE` seconds (or :data:`MAX_WAIT` after they began),
then decided together; and the deletions a replica made recently (over :data:`WINDOW` seconds) count together
against the deletion threshold, however many passes decided them.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import Observed, Replica
from onitu.sync.decide.renames import deleted

WINDOW = 120.0
SETTLE = 1.0
MAX_WAIT = 10.0

Key = tuple[str, str]  # (service, folder)


@dataclass
class Burst:
    """What one replica reported since it began deleting."""

    first: float
    last: float  # its last report of a deletion
    paths: set[str] = field(default_factory=set)

    def over(self, now: float) -> bool:
        return now - self.last >= SETTLE or now - self.first >= MAX_WAIT


class Deletions:
    """Per replica and folder, the deletions under way and those made recently."""

    def __init__(self) -> None:
        self.bursts: dict[Key, Burst] = {}
        self._recent: dict[Key, deque[tuple[float, int]]] = defaultdict(deque)

    def reported(self, key: Key, entries: Iterable[tuple[str, Observed | None]]) -> None:
        """A change report from ``key``: a deletion begins or extends a burst, which collects what is reported."""
        now = time.monotonic()
        entries = list(entries)
        burst = self.bursts.get(key)
        if burst is not None and burst.over(now):
            del self.bursts[key]
            burst = None
        if any(obs is None for _, obs in entries):
            if burst is None:
                burst = self.bursts[key] = Burst(now, now)
            burst.last = now
        if burst is not None:
            burst.paths.update(path for path, _ in entries)

    def end_bursts(self) -> None:
        """Forget the bursts that are over (their paths may be decided)."""
        now = time.monotonic()
        for key in [k for k, burst in self.bursts.items() if burst.over(now)]:
            del self.bursts[key]

    def waiting(self, folder: str, path: str) -> bool:
        """Whether ``path`` was reported by a replica of ``folder`` that is still deleting."""
        return any(path in burst.paths for (_, f), burst in self.bursts.items() if f == folder)

    def recent(self, service: str, folder: str) -> int:
        """How many entries ``service`` deleted in ``folder`` lately."""
        window = self._recent[service, folder]
        while window and window[0][0] < time.monotonic() - WINDOW:
            window.popleft()
        return sum(n for _, n in window)

    def count(self, folder: str, replicas: Iterable[Replica], ancestors: dict[str, FileMeta],
              held_back: dict[tuple[str, str], set[str]]) -> None:
        """Count what a pass found deleted on each replica, renames aside and those held for approval left out."""
        for replica in replicas:
            if replica.unavailable:
                continue
            gone = len(deleted(replica, ancestors) - held_back.get((folder, replica.service), set()))
            if gone:
                self._recent[replica.service, folder].append((time.monotonic(), gone))

    def judged(self, service: str, folder: str) -> None:
        """The user approved or rejected ``service``'s deletions in ``folder``: they count no more."""
        self._recent.pop((service, folder), None)
