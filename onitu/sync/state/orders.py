"""The orders the referee sent and the plugs have not reported done: what they touch, and what waits on them.

An order holds up to :data:`ORDER_SIZE` actions for one plug. While it is under way, every path it touches is
*busy*: neither decided again nor resolved (so orders never race each other), and nor is a directory above it or
anything below it. A copy that must wait for another order (its source first renames a conflict aside) is kept
here until that order's result comes back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from onitu.sync import tuples
from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import Action, Copy, Mkdir, paths_of, service_of
from onitu.sync.drivers.contract import ancestors
from onitu.sync.state.ledger import Ledger

log = logging.getLogger(__name__)

ORDER_SIZE = 64  # actions per order tuple (one tuple, one notify event and one result for up to this many files)


@dataclass(slots=True)
class Outstanding:
    """An order sent and not yet reported done (``count`` actions)."""

    service: str
    folder: str
    paths: tuple[str, ...]
    size: int = 0
    count: int = 1
    sent: float = field(default_factory=time.time)  # when it was sent: the replica's lag is the oldest's age
    # its actions and the agreed version each brings about, as sent: its result is read with them, not with the
    # copy the plug sends back (decoding and checking that again cost more than deciding the paths)
    actions: tuple[Action, ...] = ()
    metas: tuple[FileMeta | None, ...] = ()


class Orders:
    """The orders under way, by id; they are written to the space with the ledger's records (:meth:`send`)."""

    def __init__(self, ledger: Ledger, space: Any, reads_rows: Callable[[str], bool] = lambda service: False) -> None:
        self.ledger, self.space = ledger, space
        self.reads_rows = reads_rows  # whether a service's plug reads orders as rows (see tuples.order_body)
        self.sent: dict[int, Outstanding] = {}
        self.actions = 0  # actions of the orders under way
        self.transferred: Counter[str] = Counter()  # service -> bytes of the copies in orders done, since start
        self._busy: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # orders per path
        self._busy_below: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # per ancestor
        self._waiting: dict[int, list[tuple[str, Action]]] = defaultdict(list)  # order id -> what waits on it
        self._next = time.time_ns() // 1000 * 1000
        self._burst = False  # orders were sent since the last call to burst_over that found none under way

    def __len__(self) -> int:
        return len(self.sent)

    def load(self) -> None:
        """Take up the orders waiting in the space (sent by an earlier referee)."""
        for _, service, oid, body in self.space.read_all((tuples.ORDER, None, None, None)):
            try:
                actions, metas = tuples.order_from_wire(body)
            except (ValueError, TypeError, KeyError):
                continue
            self._track(oid, service, body["folder"], actions, metas)

    def send(self, orders: Iterable[tuple[str, Action]]) -> list[int]:
        """Orders (folder, action) as tuples, with the agreed version each brings about, committed with the ledger;
        the id of each action's order. A plug's actions go up to :data:`ORDER_SIZE` in a tuple, in the order given."""
        orders = list(orders)
        runs: dict[tuple[str, str], list[int]] = {}  # (folder, service) -> indexes of its actions, in order
        for n, (folder, action) in enumerate(orders):
            runs.setdefault((folder, service_of(action)), []).append(n)
        chunks = [(folder, service, run[i:i + ORDER_SIZE]) for (folder, service), run in runs.items()
                  for i in range(0, len(run), ORDER_SIZE)]
        oids = [0] * len(orders)
        for folder, service, chunk in sorted(chunks, key=lambda c: c[2][0]):  # as the first of their actions came
            oid = self._next
            actions = [orders[n][1] for n in chunk]
            metas = []
            for action in actions:
                meta = self.ledger.latest(folder, paths_of(action)[0])  # as agreed with these orders
                metas.append(meta if isinstance(action, Copy | Mkdir) else None)
            body = tuples.order_body(folder, actions, metas, self.reads_rows(service))
            self.ledger.also([("write", (tuples.ORDER, service, oid, body), None)],
                             [(folder, paths_of(a)[0]) for a in actions])
            self._track(oid, service, folder, actions, metas)
            log.debug("order %s to %s: %s", oid, service, actions)
            for n in chunk:
                oids[n] = oid
        self.ledger.commit(self.space)
        return oids

    def after(self, oid: int, folder: str, action: Action) -> None:
        """Keep ``action`` until order ``oid`` is done (:meth:`done` hands it back)."""
        self._waiting[oid].append((folder, action))

    def done(self, oid: Any) -> tuple[Outstanding | None, list[tuple[str, Action]]]:
        """Order ``oid`` came back: no longer under way. It (None if unknown), and the actions that waited on it."""
        if type(oid) is not int:
            return None, []
        order = self.sent.pop(oid, None)
        if order is not None:
            self.actions -= order.count
            self.transferred[order.service] += order.size
            for path in order.paths:
                self._mark_busy(order.folder, path, -1)
        return order, self._waiting.pop(oid, [])

    def withdraw(self, keep: Callable[[Outstanding], bool]) -> list[tuple[str, Action]]:
        """Stop waiting for the orders ``keep`` refuses, and for what waited on them, and take their tuples back
        (those a plug took meanwhile with its result are skipped: that result still comes, and is read with the
        actions it tells, see :meth:`as_sent`). The (folder, action) of each of their actions and of those that
        waited on them, to be decided again."""
        gone = [oid for oid, order in self.sent.items() if not keep(order)]
        freed: list[tuple[str, Action]] = []
        taken = []
        for oid in gone:
            order, waited = self.done(oid)
            assert order is not None
            self.transferred[order.service] -= order.size  # not transferred after all
            taken.append((tuples.ORDER, order.service, oid, None))
            freed += [(order.folder, action) for action in order.actions] + waited
        if taken:
            log.info("withdrew %d orders of %s", len(taken), ", ".join(sorted({t[1] for t in taken})))
            tuples.take_all(self.space, taken)
        return freed

    def is_busy(self, folder: str, path: str) -> bool:
        """Whether an order under way touches ``path``, a directory above it or anything below it."""
        busy = self._busy.get(folder)
        if not busy:
            return False
        return path in busy or path in self._busy_below[folder] or any(a in busy for a in ancestors(path))

    def pending(self) -> dict[tuple[str, str], tuple[int, int, float]]:
        """Per (folder, service): the files and bytes of the orders under way, and when the oldest was sent."""
        counts: dict[tuple[str, str], tuple[int, int, float]] = {}
        for order in self.sent.values():
            files, size, oldest = counts.get((order.folder, order.service), (0, 0, order.sent))
            counts[order.folder, order.service] = (files + order.count, size + order.size, min(oldest, order.sent))
        return counts

    def burst_over(self) -> bool:
        """True once after each burst of orders, when none is under way any more."""
        if self.sent or not self._burst:
            return False
        self._burst = False
        return True

    def as_sent(self, oid: Any, folder: str, body: dict[str, Any]) -> tuple[tuple[Action, ...],
                                                                         tuple[FileMeta | None, ...]]:
        """The actions of order ``oid`` and the agreed version each brings about: as sent while it is under way; as
        its result ``body`` tells them back once it is no longer tracked (withdrawn, say). Raises ValueError."""
        order = self.sent.get(oid) if type(oid) is int else None
        if order is not None and order.folder == folder:
            return order.actions, order.metas
        actions, metas = tuples.order_from_wire(body)
        return tuple(actions), tuple(metas)

    def _track(self, oid: int, service: str, folder: str, actions: list[Action],
               metas: list[FileMeta | None]) -> None:
        paths = tuple(p for a in actions for p in paths_of(a))  # a copy's source path: not deleted before it is read
        size = sum(a.size for a in actions if isinstance(a, Copy))
        self.sent[oid] = Outstanding(service, folder, paths, size, len(actions), actions=tuple(actions),
                                     metas=tuple(metas))
        self._burst = True
        self.actions += len(actions)
        self._next = max(self._next, oid + 1)
        for path in paths:
            self._mark_busy(folder, path, 1)

    def _mark_busy(self, folder: str, path: str, step: int) -> None:
        for table, key in [(self._busy[folder], path), *((self._busy_below[folder], a) for a in ancestors(path))]:
            table[key] += step
            if table[key] <= 0:
                del table[key]
