"""The operations a client can ask of the space server: :data:`OPERATIONS` lists them, one entry each.

An entry names the handler and the kind of every number among its arguments (checked by the server before the
handler runs, see :mod:`onitu.space.numbers`). A handler gets the request's :class:`~onitu.space.server.Route`
and its ``args`` map (hostile until checked), and answers through the server now or later (a blocked take, a
notify's events, a big read_all sent a chunk per loop turn). Mutations are remembered per (session, sequence) so
that a retry gets the same answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onitu.space import numbers
from onitu.space.bounded import BoundedTemplate
from onitu.space.errors import InvalidTuple, RequestExpired, SpaceError
from onitu.space.protocol import as_stored, event_message, packb, reply_parts
from onitu.space.store import Subscription, Waiter
from onitu.space.template import Template
from onitu.space.wire import Stream

if TYPE_CHECKING:
    from onitu.space.server import Route, SpaceServer

CHUNK = 1 << 20  # bytes of a read_all answer packed and sent per loop turn
BACKLOG = 4 * CHUNK  # bytes of it waiting for a local client to read before the next part waits too
WAIT_FOR_READER = 0.005  # seconds between looks at a slow reader's backlog


class Operations:
    """The handlers, over the server's store and outbox."""

    def __init__(self, server: SpaceServer) -> None:
        self.server = server
        self.store = server.store

    def hello(self, route: Route, args: dict) -> None:
        ttl = numbers.ttl(args.get("ttl", 5.0))
        if route.sid not in self.store.sessions:
            self.server.limits.check(route.key, self.server.key_name(route.key), "sessions")
        self.store.open_session(route.sid, ttl)
        self.server.limits.opened(route.key, route.sid)
        self.server.answer(route, self._info(), False)

    def _info(self) -> dict[str, Any]:
        return {"boot": self.server.boot, "event_id": self.store.event_id, "epoch": self.server.epoch}

    def ping(self, route: Route, args: dict) -> None:
        self.server.answer(route, self._info(), False)

    def bye(self, route: Route, args: dict) -> None:
        self.store.end_session(route.sid)
        self.server.forget_session(route.sid)
        self.server.answer(route, None, False)

    def write(self, route: Route, args: dict) -> None:
        self._may_store(route, 1)
        eid = self.store.write(as_stored(args.get("t")), args.get("lease"), route.sid)
        self.server.answer(route, eid, True)

    def _may_store(self, route: Route, count: int) -> None:
        if route.key:  # LOCAL clients' tuples are not counted
            limits, name = self.server.limits, self.server.key_name(route.key)
            limits.check(route.key, name, "tuples", count)
            limits.check(route.key, name, "bytes", route.size)

    def take(self, route: Route, args: dict) -> None:
        self._find(route, args, True)

    def read(self, route: Route, args: dict) -> None:
        self._find(route, args, False)

    def _template(self, pattern: Any) -> Template:
        template = self.server.regexes.template(pattern)
        if type(template) is BoundedTemplate:
            template.prefetch(self.store.candidates(template))
        return template

    def _find(self, route: Route, args: dict, take: bool) -> None:
        template = self._template(args.get("p"))
        timeout = args.get("timeout")
        found = self.store.take(template) if take else self.store.read(template)
        if found is not None:
            return self.server.answer(route, found, take)
        _raise_bound(template)
        if timeout == 0:
            raise RequestExpired(f"no tuple matches {template.pattern!r}")
        self.server.limits.check(route.key, self.server.key_name(route.key), "blocked")
        route.handle = self.store.wait(template, take, lambda result: self._woken(route, take, result),
                                       timeout, route.sid)
        self.server.hold(route)
        return None

    def _woken(self, route: Route, take: bool, result: Any) -> None:
        self.server.unhold(route)
        if isinstance(result, SpaceError):
            self.server.send_error(route.sock, route.ident, route.seq, result)
        else:
            self.server.answer(route, result, take)

    def read_all(self, route: Route, args: dict) -> None:
        template = self._template(args.get("p"))
        found = self.store.read_all(template, args.get("limit"), encoded=True)
        _raise_bound(template)
        self._send_parts(route, found, 0, args.get("packed") is True)

    def _send_parts(self, route: Route, found: list, offset: int, as_bytes: bool) -> None:
        """Up to :data:`CHUNK` bytes of the answer now, the rest on later turns (the loop stays free), and only as
        fast as a local client reads them (its stream's unsent bytes stay under :data:`BACKLOG`: a client is cut
        off past MAX_UNSENT). The store's bytes go as they are: as the tuples, or (``as_bytes``) as msgpack bytes
        holding each."""
        stream = route.sock if type(route.sock) is Stream else None
        if stream is not None and stream.closed:
            return  # the client is gone: it asks again
        if stream is not None and stream.unsent() > BACKLOG:
            server = self.server
            server.loop.call_later(WAIT_FOR_READER, server.turn, lambda: self._send_parts(route, found, offset,
                                                                                        as_bytes))
            return
        packed, size, end = [], 0, offset
        while end < len(found) and size < CHUNK:
            item = found[end]
            packed.append(packb(item) if as_bytes else item)
            size += len(item)
            end += 1
        last = end == len(found)
        for frame in reply_parts(route.seq, offset, packed, last):
            self.server.outbox.append((route.sock, route.ident, frame))
        if not last:
            self.server.call_soon(lambda: self._send_parts(route, found, end, as_bytes))

    def cancel(self, route: Route, args: dict) -> None:
        self.store.cancel(numbers.counter(args.get("id"), "entry id"))
        self.server.answer(route, None, True)

    def renew(self, route: Route, args: dict) -> None:
        eid = numbers.counter(args.get("id"), "entry id")
        self.server.answer(route, self.store.renew(eid, args.get("lease"), route.sid), True)

    def batch(self, route: Route, args: dict) -> None:
        ops = args.get("ops")
        if not isinstance(ops, list):
            raise InvalidTuple("batch needs a list of ops")
        # the bulk of a big batch, ["write", tuple], decoded inline: no call per op (the rest via _batch_op)
        decoded = [("write", as_stored(op[1]), None) if type(op) is list and len(op) == 2 and op[0] == "write"
                   else self._batch_op(op) for op in ops]
        self._may_store(route, sum(1 for op in decoded if op[0] == "write"))
        try:
            result = self.store.batch(decoded, route.sid)
        except RequestExpired:
            for op in decoded:
                if op[0] != "write":
                    _raise_bound(op[1])
            raise
        self.server.answer(route, result, True)

    def _batch_op(self, op: Any) -> tuple:
        if not isinstance(op, list) or not op or op[0] not in ("write", "take", "read", "discard"):
            raise InvalidTuple(f"batch op must be ['write', tuple, lease], ['take', template], ['read', template] "
                               f"or ['discard', template], not {op!r}")
        if op[0] == "write":
            if len(op) not in (2, 3):
                raise InvalidTuple(f"batch write must be ['write', tuple] or ['write', tuple, lease]: {op!r}")
            return ("write", as_stored(op[1]), op[2] if len(op) == 3 else None)
        if len(op) != 2:
            raise InvalidTuple(f"batch {op[0]} must be ['{op[0]}', template]: {op!r}")
        return (op[0], self._template(op[1]))

    def notify(self, route: Route, args: dict) -> None:
        events = args.get("events")
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise InvalidTuple("notify needs a list of event names")
        self.server.limits.check(route.key, self.server.key_name(route.key), "blocked")
        template = self.server.regexes.template(args.get("p"))
        # Replayed events (since) go out before this OK; clients buffer them.
        route.handle = self.store.subscribe(events, template, lambda event: self._push(route, event),
                                            args.get("lease"), route.sid, args.get("since"))
        self.server.hold(route)
        if getattr(template, "error", None) is not None:
            self.store.close(route.handle)
            _raise_bound(template)
        self.server.answer(route, self.store.event_id, False)

    def _push(self, route: Route, event: tuple) -> None:
        route.delivered += 1
        self.server.outbox.append((route.sock, route.ident, event_message(route.seq, (*event, route.delivered))))
        if event[1] == "close":
            self.server.unhold(route)

    def unnotify(self, route: Route, args: dict) -> None:
        target = self.server.routes.get((route.sid, args.get("seq")))
        if target is not None and isinstance(target.handle, Subscription):
            self.store.close(target.handle)
        self.server.answer(route, None, False)

    def withdraw(self, route: Route, args: dict) -> None:
        """Cancel this session's blocked take/read number ``seq`` (it answers Cancelled)."""
        target = self.server.routes.get((route.sid, args.get("seq")))
        if target is not None and isinstance(target.handle, Waiter):
            self.store.cancel_wait(target.handle)
        self.server.answer(route, None, False)

    def stats(self, route: Route, args: dict) -> None:
        server = self.server
        stats = {**self.store.stats(), **server.counters, "boot": server.boot, "pid": os.getpid(),
                 "endpoints": server.endpoints, "by_key": server.limits.stats(),
                 "requests_by_op": dict(server.requests_by_op), "commit_seconds": round(server.commit_seconds, 6),
                 "cached_replies": len(server.replies), "cached_reply_bytes": server.replies.size(),
                 "evicted_replies": server.replies.evicted}
        server.answer(route, stats, False)


def _raise_bound(template: Template) -> None:
    """A template whose regex hit the server's bound found nothing because of it: say so."""
    error = getattr(template, "error", None)
    if error is not None:
        raise error


@dataclass(frozen=True)
class Operation:
    """One operation: its handler, and the kind of each number among its arguments."""

    handler: Callable[[Operations, Route, dict], None]
    numbers: Mapping[str, numbers.Kind]


OPERATIONS: dict[str, Operation] = {
    "hello": Operation(Operations.hello, {"ttl": numbers.ttl}),
    "ping": Operation(Operations.ping, {}),
    "bye": Operation(Operations.bye, {}),
    "write": Operation(Operations.write, {"lease": numbers.lease}),
    "take": Operation(Operations.take, {"timeout": numbers.timeout}),
    "read": Operation(Operations.read, {"timeout": numbers.timeout}),
    "read_all": Operation(Operations.read_all, {"limit": numbers.optional_counter}),
    "cancel": Operation(Operations.cancel, {"id": numbers.counter}),
    "renew": Operation(Operations.renew, {"id": numbers.counter, "lease": numbers.lease}),
    "batch": Operation(Operations.batch, {"ops": numbers.batch_leases}),
    "notify": Operation(Operations.notify, {"lease": numbers.lease, "since": numbers.optional_counter}),
    "unnotify": Operation(Operations.unnotify, {"seq": numbers.counter}),
    "withdraw": Operation(Operations.withdraw, {"seq": numbers.counter}),
    "stats": Operation(Operations.stats, {}),
}
