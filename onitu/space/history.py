"""The last events of a space, kept so that a notify stream can resume after a reconnection or a failover.

An event is ``(event id, kind, held)``. Kept as tuples in a deque, each cost a tuple and an int besides its body
(and a secondary's, received as lists, a list, an int and its own copy of the kind's string): over 100 bytes of
bookkeeping per event, 2-4 MB for a full history. :class:`History` keeps the bodies and the kinds (shared
strings) in two deques and the ids as runs of consecutive numbers (a space numbers its events one by one, so
there is one run per primary a history spans), about 16 bytes per event; it yields the same tuples back.

The history is bounded in events and in the bytes of the bodies it holds alone. A hub's events are mostly records
of a few hundred bytes, but a plug's listing goes by reports of a thousand entries (150 KB each, written then
taken: two events), and a restarted hub at a million files lists everything again: 20,000 such events would be
gigabytes in each space server. Past :data:`MAX_BYTES`, the oldest events go; a client that resumes from before
them gets EventsLost and reads again, as it does after a longer absence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

# One string per kind, whatever object an event came with (a secondary decodes each event's kind anew).
_KINDS = {kind: kind for kind in ("write", "take", "delete", "close")}
# Bytes of event bodies a history holds at most (bodies a live tuple shares count too): 20,000 records of a few
# hundred bytes fit; at 32 MiB, the last reports of a listing stayed in each server of an idle hub (28 MiB, 290
# bytes per file at 100,000 files).
MAX_BYTES = 8 << 20


def _size(body: Any) -> int:
    return len(body) if type(body) is bytes else 0  # decoded: an in-process space's (a list from an older primary)


class History:
    """Events in id order, at most ``maxlen`` of them (the oldest are dropped), iterated as tuples."""

    __slots__ = ("_bodies", "_kinds", "_runs", "max_bytes", "maxlen", "size", "unshipped")

    def __init__(self, maxlen: int, max_bytes: int = MAX_BYTES) -> None:
        self.maxlen, self.max_bytes = maxlen, max_bytes
        self.size = 0  # bytes of the bodies held
        # A primary's events after this id are not shipped to its secondary yet: none of them is dropped, whatever
        # the bounds (a turn of many big events is held whole until the end of the turn ships it; dropped before,
        # the secondary's history had a gap that a client resuming across it would not see). None: no secondary.
        self.unshipped: int | None = None
        self._bodies: deque[Any] = deque()
        self._kinds: deque[str] = deque()
        self._runs: deque[list[int]] = deque()  # [first id, count]: consecutive ids, oldest run first

    def __len__(self) -> int:
        return len(self._bodies)

    def append(self, event: Sequence) -> None:
        """Add an event (a tuple, or a list as the wire brings it) newer than every event held."""
        event_id, kind, body = event
        runs = self._runs
        if runs and runs[-1][0] + runs[-1][1] == event_id:
            runs[-1][1] += 1
        else:
            runs.append([event_id, 1])
        self._kinds.append(_KINDS.get(kind, kind))
        self._bodies.append(body)
        self.size += _size(body)
        while (len(self._bodies) > self.maxlen or (self.size > self.max_bytes and len(self._bodies) > 1)) \
                and (self.unshipped is None or self._runs[0][0] <= self.unshipped):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self.size -= _size(self._bodies.popleft())
        self._kinds.popleft()
        run = self._runs[0]
        run[0] += 1
        run[1] -= 1
        if not run[1]:
            self._runs.popleft()

    def extend(self, events: Iterable[Sequence]) -> None:
        for event in events:
            self.append(event)

    def extend_sharing(self, events: Iterable[Sequence], puts: Iterable[Sequence]) -> None:
        """Add the events of a primary's batch, sharing their bodies with its rows (``[id, body, ...]``) and with
        one another: decoded from the wire, a tuple's write event, its take event and its row are three copies of
        the same bytes, where a primary keeps one (the row's is the one the secondary's store keeps)."""
        seen = {row[1]: row[1] for row in puts if type(row[1]) is bytes}
        for event_id, kind, body in events:
            if type(body) is bytes:
                body = seen.setdefault(body, body)
            self.append((event_id, kind, body))

    def clear(self) -> None:
        for part in (self._bodies, self._kinds, self._runs):
            part.clear()
        self.size = 0

    def oldest(self) -> int | None:
        """The id of the oldest event held, None if there is none."""
        return self._runs[0][0] if self._runs else None

    def __iter__(self) -> Iterator[tuple[int, str, Any]]:
        """Oldest first. A snapshot of the moment of the call: events added meanwhile are not seen."""
        ids = (event_id for first, count in [tuple(run) for run in self._runs]
               for event_id in range(first, first + count))
        return zip(ids, list(self._kinds), list(self._bodies), strict=True)

    def __reversed__(self) -> Iterator[tuple[int, str, Any]]:
        """Newest first, without copying: to be consumed before the history changes (as a primary reads the events
        it has not shipped yet)."""
        kinds, bodies = reversed(self._kinds), reversed(self._bodies)
        for first, count in reversed(self._runs):
            for event_id in range(first + count - 1, first - 1, -1):
                yield event_id, next(kinds), next(bodies)
