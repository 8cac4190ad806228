"""The operations a client can ask of the space server, one method each (``op_<name>``).

Each gets the request's :class:`~onitu.space.server.Route` and its ``args`` map (hostile until checked), and
answers through ``_answer`` (now) or later (a blocked take, a notify's events). Mutations are remembered per
(session, sequence) so that a retry gets the same answer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from onitu.space.errors import InvalidTuple, RequestExpired, SpaceError
from onitu.space.local import check_timeout
from onitu.space.protocol import as_tuple, event_message
from onitu.space.store import Subscription, Waiter
from onitu.space.template import Template

if TYPE_CHECKING:
    from onitu.space.server import Route, SpaceServer

TTL_RANGE = (0.2, 3600.0)  # seconds a session may go without a keepalive


class Ops:
    """Mixed into SpaceServer."""

    def op_hello(self: SpaceServer, route: Route, args: dict) -> None:
        ttl = args.get("ttl", 5.0)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not TTL_RANGE[0] <= ttl <= TTL_RANGE[1]:
            raise InvalidTuple(f"session ttl must be seconds in {TTL_RANGE}, not {ttl!r}")
        self.store.open_session(route.sid, float(ttl))
        self._answer(route, self._info(), False)

    def _info(self) -> dict[str, Any]:
        return {"boot": self.boot, "event_id": self.store.event_id, "epoch": self.epoch}

    def op_ping(self: SpaceServer, route: Route, args: dict) -> None:
        self._answer(route, self._info(), False)

    def op_bye(self: SpaceServer, route: Route, args: dict) -> None:
        self.store.end_session(route.sid)
        self.replies.pop(route.sid, None)
        self._acked.pop(route.sid, None)
        self._answer(route, None, False)

    def op_write(self: SpaceServer, route: Route, args: dict) -> None:
        eid = self.store.write(as_tuple(args.get("t")), args.get("lease"), route.sid)
        self._answer(route, eid, True)

    def op_take(self: SpaceServer, route: Route, args: dict) -> None:
        self._find(route, args, True)

    def op_read(self: SpaceServer, route: Route, args: dict) -> None:
        self._find(route, args, False)

    def _find(self: SpaceServer, route: Route, args: dict, take: bool) -> None:
        template = Template(args.get("p"))
        timeout = args.get("timeout")
        check_timeout(timeout)
        found = self.store.take(template) if take else self.store.read(template)
        if found is not None:
            return self._answer(route, found, take)
        if timeout == 0:
            raise RequestExpired(f"no tuple matches {template.pattern!r}")
        self.routes[(route.sid, route.seq)] = route
        route.handle = self.store.wait(template, take, lambda result: self._woken(route, take, result),
                                       timeout, route.sid)
        return None

    def _woken(self: SpaceServer, route: Route, take: bool, result: Any) -> None:
        self.routes.pop((route.sid, route.seq), None)
        if isinstance(result, SpaceError):
            self._send_error(route.sock, route.ident, route.seq, result)
        else:
            self._answer(route, result, take)

    def op_read_all(self: SpaceServer, route: Route, args: dict) -> None:
        limit = args.get("limit")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidTuple(f"limit must be an int >= 0, not {limit!r}")
        self._answer(route, self.store.read_all(Template(args.get("p")), limit), False)

    def op_cancel(self: SpaceServer, route: Route, args: dict) -> None:
        self.store.cancel(_entry_id(args))
        self._answer(route, None, True)

    def op_renew(self: SpaceServer, route: Route, args: dict) -> None:
        self._answer(route, self.store.renew(_entry_id(args), args.get("lease"), route.sid), True)

    def op_batch(self: SpaceServer, route: Route, args: dict) -> None:
        ops = args.get("ops")
        if not isinstance(ops, list):
            raise InvalidTuple("batch needs a list of ops")
        decoded = [_batch_op(op) for op in ops]
        self._answer(route, self.store.batch(decoded, route.sid), True)

    def op_notify(self: SpaceServer, route: Route, args: dict) -> None:
        events = args.get("events")
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise InvalidTuple("notify needs a list of event names")
        since = args.get("since")
        if since is not None and (type(since) is not int or since < 0):
            raise InvalidTuple(f"since must be an event id, not {since!r}")
        lease = args.get("lease")
        # Replayed events (since) go out before this OK; clients buffer them.
        route.handle = self.store.subscribe(events, Template(args.get("p")), lambda event: self._push(route, event),
                                            lease, route.sid, since)
        self.routes[(route.sid, route.seq)] = route
        self._answer(route, self.store.event_id, False)

    def _push(self: SpaceServer, route: Route, event: tuple) -> None:
        route.delivered += 1
        self._outbox.append((route.sock, route.ident, event_message(route.seq, (*event, route.delivered))))
        if event[1] == "close":
            self.routes.pop((route.sid, route.seq), None)

    def op_unnotify(self: SpaceServer, route: Route, args: dict) -> None:
        target = self.routes.get((route.sid, args.get("seq")))
        if target is not None and isinstance(target.handle, Subscription):
            self.store.close(target.handle)
        self._answer(route, None, False)

    def op_withdraw(self: SpaceServer, route: Route, args: dict) -> None:
        """Cancel this session's blocked take/read number ``seq`` (it answers Cancelled)."""
        target = self.routes.get((route.sid, args.get("seq")))
        if target is not None and isinstance(target.handle, Waiter):
            self.store.cancel_wait(target.handle)
        self._answer(route, None, False)

    def op_stats(self: SpaceServer, route: Route, args: dict) -> None:
        stats = {**self.store.stats(), **self.counters, "boot": self.boot, "pid": os.getpid(),
                 "endpoints": self.endpoints}
        self._answer(route, stats, False)


def _entry_id(args: dict) -> int:
    eid = args.get("id")
    if type(eid) is not int:
        raise InvalidTuple(f"entry id must be an int, not {eid!r}")
    return eid


def _batch_op(op: Any) -> tuple:
    if not isinstance(op, list) or not op or op[0] not in ("write", "take", "read"):
        raise InvalidTuple(f"batch op must be ['write', tuple, lease], ['take', template] or ['read', template], "
                           f"not {op!r}")
    if op[0] == "write":
        if len(op) not in (2, 3):
            raise InvalidTuple(f"batch write must be ['write', tuple] or ['write', tuple, lease]: {op!r}")
        return ("write", as_tuple(op[1]), op[2] if len(op) == 3 else None)
    if len(op) != 2:
        raise InvalidTuple(f"batch {op[0]} must be ['{op[0]}', template]: {op!r}")
    return (op[0], Template(op[1]))


