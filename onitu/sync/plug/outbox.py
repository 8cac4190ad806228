"""A plug's reports and results on their way to the space, in the order they were numbered, in shared batches.

The referee applies a plug's reports and results in sequence-number order and ignores anything numbered below what
it already applied, so they must reach the space in that order. Sending each one alone costs a round trip (and a
replicated commit) apiece; here whoever flushes sends everything queued so far in a few batches, while the other
threads queue behind it (group commit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from onitu.space.client import SpaceClient
from onitu.space.errors import InvalidTuple, RequestExpired, SpaceError
from onitu.space.local import TemplateLike

log = logging.getLogger(__name__)

BATCH = 64  # operations per space batch
RETRY = 0.2  # seconds between tries while the space cannot record anything
HOLD_POLL = (0.05, 1.0)  # seconds between looks while a sender is held: first, then doubling up to the second


class Outbox:
    """Items (each a list of space operations that go together) sent in order by :meth:`flush`."""

    def __init__(self, space: SpaceClient, stop: threading.Event, service: str) -> None:
        self.space, self.stop, self.service = space, stop, service
        self._items: list[list[tuple]] = []
        self._lock = threading.Lock()
        self._sending = threading.Lock()  # one sender at a time: batches leave in order
        self.beat: Callable[[], None] = lambda: None  # called per batch sent: a million entries' reports take long

    def put(self, ops: list[tuple]) -> None:
        """Queue one item (call it where its sequence number is given, under the same lock)."""
        with self._lock:
            self._items.append(ops)

    def flush(self) -> None:
        """Send everything queued, including what other threads queue meanwhile; return once it is recorded.

        An item whose take finds nothing (its order was withdrawn, its plug having been gone a while; or it was a
        repeated order whose result an earlier try sent) is sent without that take: the result still tells the referee
        what the actions did. An item the space refuses is dropped alone. While the space cannot record anything (a
        failover), this retries until it can or the plug stops; what is left unsent then stays queued, first in line.
        """
        with self._sending:
            with self._lock:
                items, self._items = self._items, []
            while items:
                size, count = 0, 0
                for item in items:
                    if count and size + len(item) > BATCH:
                        break
                    size, count = size + len(item), count + 1
                try:
                    self._send(items[:count])
                except BaseException:
                    with self._lock:
                        self._items[:0] = items
                    raise
                items = items[count:]
                self.beat()

    def hold(self, waiting: TemplateLike) -> None:
        """Return once nothing matches ``waiting`` (what was sent and not yet taken by its reader), the plug stops,
        or the space cannot tell (the outbox's own retries deal with an absent space). A plug listing a million
        files this way sends no faster than the referee takes: the reports waiting in the space stay a few MB, where
        a restarted hub's two plugs had put 2,000 reports of 142 KB there while the referee loaded its ledger, and
        the referee's notify stream was cut for falling 64 MiB behind."""
        delay = HOLD_POLL[0]
        while not self.stop.is_set():
            try:
                if not self.space.read_all(waiting, limit=1):
                    return
            except SpaceError as exc:
                log.debug("%s: not holding back: %s", self.service, exc)
                return
            self.beat()
            self.stop.wait(delay)
            delay = min(delay * 2, HOLD_POLL[1])

    def _send(self, group: list[list[tuple]]) -> None:
        try:
            self._commit([op for item in group for op in item])
        except (RequestExpired, InvalidTuple) as exc:
            if len(group) > 1:
                for item in group:  # find the one that cannot go, send the others
                    self._send([item])
            elif isinstance(exc, RequestExpired):
                log.debug("%s: a result whose order was withdrawn or already taken: %s", self.service, exc)
                self._send([[op for op in group[0] if op[0] not in ("take", "discard")]])
            else:
                log.error("%s: the space refuses a report or result, dropped: %s", self.service, exc)

    def _commit(self, ops: list[tuple]) -> None:
        while True:
            try:
                self.space.batch(ops)
                return
            except (RequestExpired, InvalidTuple):
                raise
            except SpaceError as exc:
                if self.stop.is_set():
                    raise
                log.warning("%s: cannot send reports and results yet: %s", self.service, exc)
                time.sleep(RETRY)
