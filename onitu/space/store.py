"""The tuple space's state machine: tuples, leases, sessions, blocked requests, subscriptions, events.

The store is single-threaded and never blocks; front ends serialize calls (a lock in-process, the event loop in
the server). A request that must wait registers a :class:`Waiter` whose callback fires when a write satisfies it,
when it times out, or when its session ends. Every change that must survive a crash is appended to
:attr:`Store.changes` for the durable layer (and the replication stream) to drain.

Semantics follow Ruby Rinda: a write first satisfies every blocked ``read`` it matches, then at most one blocked
``take`` (the oldest), and is stored only if no take consumed it; an already-expired write is announced
(``write`` then ``delete``) but never stored.

A *packed* store (the server's) holds its tuples as :mod:`onitu.space.packed` says.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from onitu.space import numbers
from onitu.space.errors import Cancelled, EventsLost, InvalidTuple, NoSuchEntry, RequestExpired, SpaceError
from onitu.space.fitted import fitted
from onitu.space.history import History
from onitu.space.index import FifoIndex, Index, RindaIndex
from onitu.space.packed import same as _same
from onitu.space.packed import unpack_held as _unpack_held
from onitu.space.packed import unpack_stored
from onitu.space.protocol import packb
from onitu.space.template import Template, check_tuple

Tuple = tuple | dict
Lease = float | int | str | None
SESSION = "session"
EVENT_KINDS = frozenset({"write", "take", "delete", "close"})
_TAKES = ("take", "discard")  # batch ops that remove what they find
Event = tuple[int, str, Any]  # (event id, kind, tuple)


@dataclass(eq=False)
class Session:
    """A client's liveness: tuples leased to it die when it misses its TTL."""

    sid: bytes
    ttl: float
    deadline: float
    tuples: set[int] = field(default_factory=set)
    waiters: set[Waiter] = field(default_factory=set)
    subs: set[Subscription] = field(default_factory=set)


@dataclass(eq=False)
class Waiter:
    """A blocked take or read. ``callback(result)`` gets the tuple, or the SpaceError that ended the wait."""

    template: Template
    take: bool
    callback: Callable[[Any], None]
    deadline: float | None
    session: Session | None
    active: bool = True


@dataclass(eq=False)
class Subscription:
    """A notify: ``callback(event)`` for each matching event; a final ``close`` event ends it."""

    template: Template
    kinds: frozenset[str]
    callback: Callable[[Event], None]
    deadline: float | None
    session: Session | None
    active: bool = True


def lease_deadline(lease: Lease, now: float) -> float | None:
    """Absolute deadline of a lease given in seconds; None for forever (and for session leases)."""
    lease = numbers.lease(lease)
    return None if lease is None or lease == SESSION else now + lease


# Events kept for a notify stream to resume after a reconnection or failover (older: EventsLost). They keep taken
# tuples alive: a modest count (see onitu.space.history), the few seconds a reconnection takes.
HISTORY = 20_000


class Store:
    """In-memory tuple space. Not thread-safe: callers serialize access."""

    def __init__(self, *, rinda_order: bool = False, clock: Callable[[], float] = time.time,
                 history: int = HISTORY, packed: bool = False) -> None:
        self.clock = clock
        self.packed = packed
        # Unpacked (in-process), a tuple is held as given: any Python values, returned as the same objects.
        self._pack: Callable[[Tuple], Any] = packb if packed else _same
        self._unpack: Callable[[Any], Tuple] = _unpack_held if packed else _same
        self.live: dict[int, Any] = {}  # id -> tuple, or its bytes when packed (see onitu.space.packed)
        self.index: Index = RindaIndex(self.live) if rinda_order else FifoIndex(self.live)
        self.next_id = 1
        self.leases: dict[int, float] = {}  # id -> deadline, leased tuples only
        self.owner: dict[int, Session] = {}  # id -> session, session-leased tuples only
        self.sessions: dict[bytes, Session] = {}
        self.waiters: dict[Waiter, None] = {}  # registration order
        self.subs: dict[Subscription, None] = {}
        self.event_id = 0
        self.history = History(history)  # a packed store's tuples as their bytes
        self.changes: list[tuple] = []
        self._timers: list[tuple[float, int, Any]] = []
        self._tick = itertools.count()

    # ---- writing -----------------------------------------------------------------------------------------

    def write(self, tup: Sequence | dict, lease: Lease = None, session: bytes | None = None) -> int:
        """Store a tuple (or hand it to a blocked take); return its entry id."""
        return self._write(check_tuple(tup), lease, session, self.reap())

    def _write(self, tup: Tuple, lease: Lease, session: bytes | None, now: float) -> int:
        deadline = None if lease is None else lease_deadline(lease, now)
        owner = None if lease is None else self._owner(lease, session)
        body = self._pack(tup)  # first: a tuple that cannot be encoded is refused before it has any effect
        held = body if self.packed else tup
        eid = self.next_id
        # Not += 1: a sum gets a digit more than it needs (48 bytes allocated, not 32), kept by the live tuple it keys
        self.next_id = eid + 2 - 1
        waiters = self.waiters
        if waiters:
            self._offer_to_readers(tup)
        self._emit("write", tup, body)
        if deadline is not None and deadline <= now:
            self._emit("delete", tup, body)
            return eid
        if waiters:
            taker = next((w for w in waiters if w.take and w.template.match(tup)), None)
            if taker is not None:
                self._finish(taker, tup)
                self._emit("take", tup, body)
                return eid
        self._store(eid, tup, held, deadline, owner)
        self.changes.append(("put", eid, body, deadline, owner.sid if owner else None))
        return eid

    def _owner(self, lease: Lease, session: bytes | None) -> Session | None:
        if lease != SESSION:
            return None
        owner = self.sessions.get(session) if session is not None else None
        if owner is None:
            raise InvalidTuple("lease='session' needs an open session")
        return owner

    def _store(self, eid: int, tup: Tuple, body: Any, deadline: float | None, owner: Session | None) -> None:
        self.live[eid] = body
        self.index.add(eid, tup)
        self._hold(eid, deadline, owner)

    def _hold(self, eid: int, deadline: float | None, owner: Session | None) -> None:
        """Give a live tuple its lease: a deadline, or the session it dies with (or neither: forever)."""
        if deadline is not None:
            self.leases[eid] = deadline
            self._at(deadline, eid)
        if owner is not None:
            self.owner[eid] = owner
            owner.tuples.add(eid)

    def _offer_to_readers(self, tup: Tuple) -> None:
        for w in [w for w in self.waiters if not w.take and w.template.match(tup)]:
            self._finish(w, tup)

    # ---- finding -----------------------------------------------------------------------------------------

    def take(self, template: Template) -> Tuple | None:
        """Remove and return the first match (oldest first), or None."""
        self.reap()
        found = self._find(template)
        return None if found is None else self._remove(found[0], "take", found[1])

    def read(self, template: Template) -> Tuple | None:
        """Return the first match without removing it, or None."""
        self.reap()
        found = self._find(template)
        return None if found is None else found[1]

    def read_all(self, template: Template, limit: int | None = None, encoded: bool = False) -> list[Any]:
        """Every match, in the order take would find them (Rinda: oldest first even for symbol bins); ``encoded``:
        as the store holds them (a packed store: mostly msgpack bytes, to send as they are)."""
        self.reap()
        live, unpack, out = self.live, self._unpack, []
        exact = self.packed and self.index.exact(template)  # no need to decode to know they match
        for eid in self.index.candidates(template, True):
            held = live[eid]
            tup = None if exact else unpack(held)
            if tup is None or template.match(tup):
                out.append(held if encoded else tup if tup is not None else unpack(held))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def candidates(self, template: Template) -> list[Tuple]:
        """The live tuples the index offers for a template (a superset of its matches), oldest first."""
        live, unpack = self.live, self._unpack
        return [unpack(live[eid]) for eid in self.index.candidates(template, True)]

    def entry(self, eid: int) -> Tuple:
        """The live tuple of an entry id (KeyError if there is none)."""
        return self._unpack(self.live[eid])

    def _find(self, template: Template, skip: set[int] | frozenset = frozenset()) -> tuple[int, Tuple] | None:
        """The first match: (entry id, tuple), or None."""
        live, unpack = self.live, self._unpack
        exact = self.packed and self.index.exact(template)
        for eid in self.index.candidates(template, False):
            if eid not in skip:
                tup = unpack(live[eid])
                if exact or template.match(tup):
                    return eid, tup
        return None

    def _remove(self, eid: int, kind: str, tup: Tuple | None = None) -> Tuple:
        """Remove a live tuple (given decoded when the caller has it already) and announce it."""
        body = self.live.pop(eid)
        if tup is None:
            tup = self._unpack(body)
        self.index.remove(eid, tup, kind == "take")
        self.leases.pop(eid, None)
        owner = self.owner.pop(eid, None)
        if owner is not None:
            owner.tuples.discard(eid)
        self.changes.append(("del", eid))
        self._emit(kind, tup, body)
        return tup

    # ---- batches -----------------------------------------------------------------------------------------

    def batch(self, ops: Iterable[tuple], session: bytes | None = None) -> list[Any]:
        """Apply ``("write", tuple, lease)``, ``("take", template)``, ``("read", template)`` and
        ``("discard", template)`` ops atomically.

        Every take must find a tuple (an older one, or one written earlier in the batch) or nothing happens and
        RequestExpired is raised. Returns per op: the entry id (write), the tuple (take, read) or None (discard: a
        take whose caller has the tuple already, a consumer of notify events; a referee consuming 256 reports of
        140 KB took back 36 MB in one answer, cached for retries, committed and shipped to the secondary).
        """
        ops = [_check_op(op) for op in ops]
        now = self.reap()
        plan = self._plan(ops, now, session)
        results: list[Any] = []
        claimed_writes = {target for kind, target, _ in plan if kind in _TAKES and type(target) is tuple}
        for i, (op, (kind, target, tup)) in enumerate(zip(ops, plan, strict=True)):
            if kind == "write":
                if ("w", i) in claimed_writes:
                    results.append(self._reserve_id(op[1]))
                else:
                    results.append(self._write(op[1], op[2], session, now))
            elif kind in _TAKES:
                if type(target) is tuple:
                    self._emit("take", tup)
                else:
                    self._remove(target, "take", tup)
                results.append(tup if kind == "take" else None)
            else:
                results.append(tup)
        return results

    def _plan(self, ops: list[tuple], now: float, session: bytes | None) -> list[tuple[str, Any, Any]]:
        """Per op: (kind, target, tuple), the target of a take or read being a live entry id or ``("w", i)``,
        the write of op i earlier in the batch, and the tuple it finds."""
        taken: set[int] = set()
        pending: list[tuple[int, Tuple]] = []  # writes earlier in the batch, not yet claimed
        plan: list[tuple[str, Any, Any]] = []
        for i, op in enumerate(ops):
            if op[0] == "write":
                tup, lease = op[1], op[2]
                deadline = None
                if lease is not None:  # most writes of a big batch have none
                    deadline = lease_deadline(lease, now)
                    self._owner(lease, session)
                if deadline is None or deadline > now:
                    pending.append((i, tup))
                plan.append(("write", None, None))
                continue
            template = op[1]
            found = self._find(template, taken)
            if found is not None:
                if op[0] in _TAKES:
                    taken.add(found[0])
                plan.append((op[0], *found))
                continue
            j = next((k for k, (_, tup) in enumerate(pending) if template.match(tup)), None)
            if j is None:
                raise RequestExpired(f"batch op {i}: no tuple matches {template.pattern!r}")
            target = ("w", pending[j][0])
            plan.append((op[0], target, pending[j][1]))
            if op[0] in _TAKES:
                del pending[j]
        return plan

    def _reserve_id(self, tup: Tuple) -> int:
        eid = self.next_id
        self.next_id = eid + 2 - 1  # as _write gives ids
        self._emit("write", tup)
        return eid

    # ---- waiting -----------------------------------------------------------------------------------------

    def wait(self, template: Template, take: bool, callback: Callable[[Any], None],
             timeout: float | None = None, session: bytes | None = None) -> Waiter:
        """Register a blocked take/read (call after take/read returned None)."""
        owner = self.sessions.get(session) if session is not None else None
        deadline = None if timeout is None else self.clock() + timeout
        waiter = Waiter(template, take, callback, deadline, owner)
        self.waiters[waiter] = None
        if owner is not None:
            owner.waiters.add(waiter)
        if deadline is not None:
            self._at(deadline, waiter)
        return waiter

    def cancel_wait(self, waiter: Waiter, error: SpaceError | None = None) -> None:
        """End a blocked request; its callback gets ``error`` (default Cancelled) unless it already finished."""
        if waiter.active:
            self._finish(waiter, error or Cancelled(f"request for {waiter.template.pattern!r} was cancelled"))

    def _finish(self, waiter: Waiter, result: Any) -> None:
        waiter.active = False
        del self.waiters[waiter]
        if waiter.session is not None:
            waiter.session.waiters.discard(waiter)
        waiter.callback(result)

    # ---- leases ------------------------------------------------------------------------------------------

    def cancel(self, eid: int) -> Tuple:
        """Delete a tuple by entry id (Rinda ``entry.cancel``): emits ``delete``."""
        self.reap()
        if eid not in self.live:
            raise NoSuchEntry(f"entry {eid} is not in the space (taken, expired or cancelled)")
        return self._remove(eid, "delete")

    def renew(self, eid: int, lease: Lease, session: bytes | None = None) -> float | None:
        """Give a stored tuple a new lease; returns its new deadline (None: forever or session)."""
        now = self.reap()
        if eid not in self.live:
            raise NoSuchEntry(f"entry {eid} is not in the space (taken, expired or cancelled)")
        deadline = lease_deadline(lease, now)
        owner = self._owner(lease, session)
        old_owner = self.owner.pop(eid, None)
        if old_owner is not None:
            old_owner.tuples.discard(eid)
        self.leases.pop(eid, None)
        if deadline is not None and deadline <= now:
            self._remove(eid, "delete")
            return deadline
        self._hold(eid, deadline, owner)
        self.changes.append(("lease", eid, deadline, owner.sid if owner else None))
        return deadline

    # ---- sessions ----------------------------------------------------------------------------------------

    def open_session(self, sid: bytes, ttl: float) -> Session:
        """Open (or re-attach to) a session; it lives while touched at least every ``ttl`` seconds."""
        now = self.clock()
        session = self.sessions.get(sid)
        if session is None:
            session = self.sessions[sid] = Session(sid, ttl, now + ttl)
            self.changes.append(("session", sid, ttl))
            self._at(session.deadline, session)
        elif session.ttl != ttl:
            session.ttl = ttl
            self.changes.append(("session", sid, ttl))
        session.deadline = max(session.deadline, now + ttl)
        return session

    def touch(self, sid: bytes) -> bool:
        """Keep a session alive; False if it is unknown (expired)."""
        session = self.sessions.get(sid)
        if session is None:
            return False
        session.deadline = self.clock() + session.ttl
        return True

    def end_session(self, sid: bytes) -> None:
        """End a session now: its tuples are deleted, its requests cancelled, its notifies closed."""
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        for waiter in list(session.waiters):
            self.cancel_wait(waiter, Cancelled(f"session {sid.hex()} ended"))
        for sub in list(session.subs):
            self.close(sub)
        for eid in sorted(session.tuples):
            self._remove(eid, "delete")
        self.changes.append(("end", sid))

    # ---- notify ------------------------------------------------------------------------------------------

    def subscribe(self, kinds: Iterable[str], template: Template, callback: Callable[[Event], None],
                  lease: float | None = None, session: bytes | None = None, since: int | None = None
                  ) -> Subscription:
        """Deliver matching events to ``callback``; with ``since``, first replay retained events after it."""
        kinds = frozenset(kinds)
        if not kinds or not kinds <= EVENT_KINDS:
            raise InvalidTuple(f"notify events must be among {sorted(EVENT_KINDS)}, not {sorted(kinds)}")
        now = self.reap()
        if since is not None:
            oldest = self.event_id + 1 if (first := self.history.oldest()) is None else first
            if since + 1 < oldest and since < self.event_id:
                raise EventsLost(f"events {since + 1}..{oldest - 1} are no longer retained")
        deadline = lease_deadline(lease, now)
        owner = self.sessions.get(session) if session is not None else None
        sub = Subscription(template, kinds, callback, deadline, owner)
        if since is not None:
            for event_id, kind, held in self.history:
                if event_id > since and kind in kinds:
                    # bytes: a packed store's event, or one its primary shipped (decoded only if replayed)
                    tup = unpack_stored(held) if type(held) is bytes else held
                    if template.match(tup):
                        callback((event_id, kind, tup))
        self.subs[sub] = None
        if owner is not None:
            owner.subs.add(sub)
        if deadline is not None:
            self._at(deadline, sub)
        return sub

    def close(self, sub: Subscription) -> None:
        """End a subscription: its callback gets a final ``close`` event."""
        if not sub.active:
            return
        sub.active = False
        del self.subs[sub]
        if sub.session is not None:
            sub.session.subs.discard(sub)
        sub.callback((self.event_id, "close", None))

    def _emit(self, kind: str, tup: Tuple, body: Any = None) -> None:
        """Announce an event: kept in the history (a packed store's as ``body``, the tuple's bytes, if given), and
        delivered to the matching subscriptions."""
        self.event_id += 1
        event = (self.event_id, kind, tup)
        if not self.packed:
            self.history.append(event)
        else:  # its bytes, shared with the tuple while it lives: decoded only if replayed
            self.history.append((self.event_id, kind, body if type(body) is bytes else packb(tup)))
        if self.subs:
            for sub in list(self.subs):
                if kind in sub.kinds and sub.template.match(tup):
                    sub.callback(event)

    # ---- time --------------------------------------------------------------------------------------------

    def _at(self, deadline: float, what: Any) -> None:
        if deadline == float("inf"):
            return
        heapq.heappush(self._timers, (deadline, next(self._tick), what))

    def next_deadline(self) -> float | None:
        """When :meth:`reap` next has work (a lease, timeout or session TTL falls due)."""
        return self._timers[0][0] if self._timers else None

    def reap(self) -> float:
        """Expire due leases, time out due waiters, end sessions past their TTL. Returns the time used."""
        now = self.clock()
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, what = heapq.heappop(timers)
            self._due(what, deadline, now)
        return now

    def _due(self, what: Any, deadline: float, now: float) -> None:
        if type(what) is int:
            current = self.leases.get(what)
            if current is not None and current <= now:
                self._remove(what, "delete")
        elif type(what) is Waiter:
            if what.active and what.deadline is not None and what.deadline <= now:
                self._finish(what, RequestExpired(f"no tuple matched {what.template.pattern!r} in time"))
        elif type(what) is Subscription:
            if what.active and what.deadline is not None and what.deadline <= now:
                self.close(what)
        elif type(what) is Session and self.sessions.get(what.sid) is what:
            if what.deadline <= now:
                self.end_session(what.sid)
            else:
                self._at(what.deadline, what)

    # ---- restore and inspection --------------------------------------------------------------------------

    def restore(self, eid: int, body: bytes, deadline: float | None, owner: bytes | None) -> None:
        """Load a tuple from disk (its msgpack bytes) without events or change records."""
        session = self.sessions.get(owner) if owner is not None else None
        if owner is not None and session is None:
            return  # its session is gone: the tuple died with it
        tup = unpack_stored(body)
        self._store(eid, tup, body if self.packed else tup, deadline, session)
        self.next_id = max(self.next_id, eid + 1)

    def restore_session(self, sid: bytes, ttl: float) -> None:
        """Reload a session: a client gets a full TTL from now to come back before its tuples die."""
        session = self.sessions[sid] = Session(sid, ttl, self.clock() + ttl)
        self._at(session.deadline, session)

    # ---- a replica's copy: the primary's rows, applied quietly --------------------------------------------

    def mirror(self, rows: list[list], decode: Callable[[bytes], Tuple]) -> None:
        """Apply a primary's rows (``[puts, dels, leases, sessions]``, see ``Durable.encode``) as its replica:
        no events, no change records and no timers, since the primary decides expiries and ships them
        (:meth:`arm` sets the timers once this copy is promoted)."""
        puts, dels, leases, sessions = rows
        for sid, ttl in sessions:  # opened first: this batch's tuples may belong to them
            if ttl is not None:
                self.sessions.setdefault(sid, Session(sid, ttl, 0.0)).ttl = ttl
        live, index = self.live, self.index
        # Removals first (they are of older tuples, never of this batch's): a record replaced by a discard and a
        # write would else share its key with the old one for a moment, filed under the key itself at that moment.
        for eid in dels:
            held = live.pop(eid, None)
            if held is not None:
                index.remove(eid, self._unpack(held), False)
                self._hold_quietly(eid, None, None)
        for eid, body, deadline, owner in puts:
            session = self.sessions.get(owner) if owner is not None else None
            if owner is not None and session is None:
                continue
            tup = decode(body)
            live[eid] = body if self.packed else tup
            index.add(eid, tup)
            self._hold_quietly(eid, deadline, session)
        for deadline, owner, eid in leases:
            if eid in live:
                self._hold_quietly(eid, deadline, self.sessions.get(owner) if owner is not None else None)
        for sid, ttl in sessions:
            if ttl is None:  # its tuples were deleted in this same batch
                self.sessions.pop(sid, None)
        self._fit()

    def _hold_quietly(self, eid: int, deadline: float | None, owner: Session | None) -> None:
        old = self.owner.pop(eid, None)
        if old is not None:
            old.tuples.discard(eid)
        self.leases.pop(eid, None)
        if deadline is not None:
            self.leases[eid] = deadline
        if owner is not None:
            self.owner[eid] = owner
            owner.tuples.add(eid)

    def reset(self) -> None:
        """Forget every tuple and session (a replica about to receive a snapshot)."""
        for table in (self.live, self.leases, self.owner, self.sessions):
            table.clear()
        self.index = type(self.index)(self.live)
        self.disarm()

    def disarm(self) -> None:
        """Stop every clock (a replica that loaded its disk: its primary decides what expires)."""
        self._timers = []

    def arm(self) -> None:
        """Start the clocks of a promoted replica: every lease, and every session with a full TTL from now, as
        a server that loads its disk gives them."""
        now, tick = self.clock(), self._tick
        timers: list[tuple[float, int, Any]] = [(d, next(tick), eid) for eid, d in self.leases.items()
                                                if d != float("inf")]
        for session in self.sessions.values():
            session.deadline = now + session.ttl
            timers.append((session.deadline, next(tick), session))
        heapq.heapify(timers)
        self._timers = timers

    def drain(self) -> list[tuple]:
        """Take the change records accumulated since the last drain."""
        changes, self.changes = self.changes, []
        self._fit()
        return changes

    def _fit(self) -> None:  # between turns (no walk of the index under way), the live table sized for its tuples
        if (live := fitted(self.live)) is not self.live:
            self.live = self.index.live = live

    def stats(self) -> dict[str, Any]:
        return {"tuples": len(self.live), "leased": len(self.leases) + len(self.owner), "sessions": len(self.sessions),
                "waiting": len(self.waiters), "subscriptions": len(self.subs), "last_event": self.event_id,
                **self.index.stats()}


def _check_op(op: Any) -> tuple:
    if type(op) is tuple and len(op) == 3 and op[0] == "write" and type(op[1]) is tuple:
        return op  # already in shape (the server decoded it so): the common case of a big batch
    if not isinstance(op, list | tuple) or not op:
        raise InvalidTuple(f"batch op must be a list like ['write', tuple, lease] or ['take', template], not {op!r}")
    kind = op[0]
    if kind == "write" and len(op) in (2, 3):
        return ("write", check_tuple(op[1]), op[2] if len(op) == 3 else None)
    if kind in ("take", "read", "discard") and len(op) == 2:
        template = op[1] if isinstance(op[1], Template) else Template(op[1])
        return (kind, template)
    raise InvalidTuple(f"unknown batch op {op!r}: expected write, take, read or discard")
