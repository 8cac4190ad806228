"""The asyncio client: the blocking client's methods as coroutines, many requests in flight on one connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from onitu.space.client import BLOCKED_RESEND, RETRY_INTERVAL, SILENT, NotifyState, Parts, _decode_found, _pattern
from onitu.space.core import Core, Security, result_of, send
from onitu.space.errors import NotPrimary, RequestExpired, SessionExpired, SpaceError, Unavailable
from onitu.space.handles import Entry, Event
from onitu.space.local import TemplateLike, check_timeout
from onitu.space.protocol import ERROR, PART, as_tuple, error_from, parse_reply
from onitu.space.store import Lease
from onitu.space.template import check_tuple

log = logging.getLogger("onitu.space.aio")


@dataclass(eq=False)
class _Call:
    op: str
    args: dict[str, Any]
    blocking: float | None
    give_up: float
    future: asyncio.Future
    start: float = field(default_factory=time.monotonic)
    sent_at: float = 0.0
    generation: int = 0
    parts: Parts = field(default_factory=Parts)


class AsyncSpaceClient:
    """An asyncio client of the space; create it with :func:`onitu.space.aconnect`."""

    def __init__(self, endpoints: Sequence[str], *, security: Security | None = None, session_ttl: float = 5.0,
                 connect_timeout: float = 10.0) -> None:
        self.core = Core(endpoints, security, session_ttl)
        self.connect_timeout = connect_timeout
        self.ctx = zmq.asyncio.Context()
        self.sock = self.core.socket(self.ctx)
        self._calls: dict[int, _Call] = {}
        self._notes: dict[int, AsyncNotification] = {}
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    async def open(self) -> None:
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._maintain())]
        info = await self._call("hello", {"ttl": self.core.ttl}, give_up=self.connect_timeout)
        self.core.seen_boot(info["boot"])

    # ---- operations --------------------------------------------------------------------------------------

    async def write(self, tup: Sequence | Mapping, lease: Lease = None) -> AsyncEntry:
        tup = check_tuple(tup)
        return AsyncEntry(self, await self._call("write", {"t": tup, "lease": lease}), tup)

    async def take(self, template: TemplateLike, timeout: float | None = None) -> Any:
        check_timeout(timeout)
        args = {"p": _pattern(template), "timeout": timeout}
        return _decode_found(await self._call("take", args, blocking=timeout))

    async def read(self, template: TemplateLike, timeout: float | None = None) -> Any:
        check_timeout(timeout)
        args = {"p": _pattern(template), "timeout": timeout}
        return _decode_found(await self._call("read", args, blocking=timeout))

    async def read_all(self, template: TemplateLike, limit: int | None = None, packed: bool = False) -> list[Any]:
        """See :meth:`onitu.space.TupleSpace.read_all`."""
        found = await self._call("read_all", {"p": _pattern(template), "limit": limit, "packed": packed})
        return found if packed else [as_tuple(t) for t in found]

    async def batch(self, ops: Iterable[Sequence]) -> list[Any]:
        wire = [[op[0], _pattern(op[1]) if op[0] != "write" else check_tuple(op[1]), *op[2:]] for op in ops]
        return [_decode_found(r) for r in await self._call("batch", {"ops": wire})]

    async def notify(self, events: Iterable[str] | str, template: TemplateLike, lease: float | None = None,
                     since: int | None = None) -> AsyncNotification:
        events = [events] if isinstance(events, str) else list(events)
        note = AsyncNotification(self, NotifyState(self.core, events, _pattern(template), lease, since))
        note.send()
        # Return only once the server holds the subscription, so no later write can slip past it.
        try:
            await asyncio.wait_for(note.confirmed.wait(), self.connect_timeout)
        except TimeoutError:
            raise Unavailable(f"the space did not confirm a notify within {self.connect_timeout} s") from None
        if note.error is not None:
            raise note.error
        return note

    async def stats(self) -> dict[str, Any]:
        return await self._call("stats", {})

    async def close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(SpaceError):
            await self._call("bye", {}, give_up=1.0)
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.core.forget(self.sock)
        self.sock.close(0)
        self.ctx.term()

    async def __aenter__(self) -> AsyncSpaceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _renew(self, eid: int, lease: Lease) -> float | None:
        return await self._call("renew", {"id": eid, "lease": lease})

    async def _cancel(self, eid: int) -> None:
        await self._call("cancel", {"id": eid})

    # ---- requests ----------------------------------------------------------------------------------------

    async def _call(self, op: str, args: dict[str, Any], blocking: float | None = 0,
                    give_up: float | None = None) -> Any:
        if self._closed:
            raise Unavailable("the client is closed")
        seq = self.core.begin()
        call = _Call(op, args, blocking, give_up or self.connect_timeout, asyncio.get_running_loop().create_future())
        self._calls[seq] = call
        try:
            self._send(seq, call)
            return await call.future
        finally:
            self._calls.pop(seq, None)
            self.core.end(seq)

    def _send(self, seq: int, call: _Call) -> None:
        args = call.args
        if call.blocking:  # a re-sent blocked request keeps its original deadline
            args = {**args, "timeout": max(0.0, call.blocking - (time.monotonic() - call.start))}
        send(self.sock, self.core.frame(call.op, seq, args))
        call.sent_at, call.generation = time.monotonic(), self.core.generation

    async def _read(self) -> None:
        while True:
            frame = await self.sock.recv()
            try:
                seq, status, body = parse_reply(frame)
            except SpaceError as exc:
                log.warning("dropping malformed reply: %s", exc)
                continue
            call = self._calls.get(seq)
            if call is not None and not call.future.done():
                try:
                    if status == PART:
                        call.parts.add(body)
                        call.sent_at = time.monotonic()  # the answer is on its way
                        continue
                    call.future.set_result(call.parts.result(result_of(status, body)))
                except NotPrimary:  # a secondary or a demoted primary: on to the next server
                    self.core.rotate(self.core.where(self.sock))
                    self.core.follow(self.sock)
                    self._send(seq, call)
                except SpaceError as exc:
                    call.future.set_exception(exc)
            elif seq in self._notes:
                self._notes[seq].deliver(status, body)
            elif seq == 0 and status == ERROR:
                log.warning("server refused a request: %s", error_from(body))

    async def _maintain(self) -> None:
        """Re-send late requests, re-register everything after a server restart, keep the session alive."""
        next_ping = time.monotonic() + self.core.ttl / 3
        while True:
            await asyncio.sleep(0.1)
            refused = self.core.refusal(self.sock)
            if refused is not None:
                self._fail_all(refused)
            now = time.monotonic()
            if any(now - call.sent_at > RETRY_INTERVAL for call in self._calls.values() if call.blocking == 0):
                # silence: that server may be gone (try the next one) or may refuse our key for good
                self.core.rotate(self.core.where(self.sock), SILENT)
                self.core.reconnect(self.sock)
            for seq, call in list(self._calls.items()):
                self._check(seq, call, now)
            for note in list(self._notes.values()):
                if note.state.stale():
                    note.send()
            if now >= next_ping:
                next_ping = now + self.core.ttl / 3
                self._tasks.append(asyncio.create_task(self._ping()))
                self._tasks = [t for t in self._tasks if not t.done()]

    def _fail_all(self, exc: SpaceError) -> None:
        """The server refused us: every request in flight, and every notify, ends with that error."""
        for call in self._calls.values():
            if not call.future.done():
                call.future.set_exception(exc)
        for note in list(self._notes.values()):
            note.fail(exc)

    def _check(self, seq: int, call: _Call, now: float) -> None:
        if call.future.done():
            return
        # a request blocked forever ends only with the server's answer
        overdue = call.blocking is not None and now - call.start > call.blocking + call.give_up
        if overdue:
            call.future.set_exception(Unavailable(
                f"no answer from the space at {self.core.endpoint} for {call.op} within {call.give_up} s"))
            return
        resend = RETRY_INTERVAL if call.blocking == 0 else BLOCKED_RESEND
        if call.generation != self.core.generation or now - call.sent_at > resend:
            self._send(seq, call)

    async def _ping(self) -> None:
        try:
            self.core.seen_boot((await self._call("ping", {}, give_up=self.core.ttl))["boot"])
        except SessionExpired:
            log.warning("session %s expired on the server; its session-leased tuples are gone; reopening",
                        self.core.sid.hex())
            with contextlib.suppress(SpaceError):
                await self._call("hello", {"ttl": self.core.ttl})
        except SpaceError as exc:
            if not self._closed:
                log.warning("keepalive to %s failed: %s", self.core.endpoint, exc)


class AsyncEntry(Entry):
    """An entry whose ``renew``/``cancel`` are coroutines."""

    __slots__ = ()

    async def renew(self, lease: float | str | None) -> float | None:  # type: ignore[override]
        return await self._space._renew(self.id, lease)

    async def cancel(self) -> None:  # type: ignore[override]
        await self._space._cancel(self.id)


class AsyncNotification:
    """An async iterator of :class:`Event` s; ends after the ``close`` event."""

    def __init__(self, client: AsyncSpaceClient, state: NotifyState) -> None:
        self.client, self.state = client, state
        self.queue: asyncio.Queue[Event | SpaceError] = asyncio.Queue()
        self.confirmed = asyncio.Event()
        self.error: SpaceError | None = None

    def send(self) -> None:
        self.client._notes.pop(self.state.seq, None)
        frame = self.state.request()
        self.client._notes[self.state.seq] = self
        send(self.client.sock, frame)

    def deliver(self, status: int, body: Any) -> None:
        try:
            result = self.state.message(status, body)
        except NotPrimary:
            self.client.core.rotate(self.client.core.where(self.client.sock))
            self.client.core.follow(self.client.sock)
            self.send()
            return
        except SpaceError as exc:
            self.fail(exc)
            return
        if self.state.confirmed:
            self.confirmed.set()
        if result is NotifyState.RESUBSCRIBE:
            self.send()
        elif result is not None:
            self.queue.put_nowait(result)

    def fail(self, exc: SpaceError) -> None:
        if not self.confirmed.is_set():
            self.error = exc
            self.confirmed.set()
        self.queue.put_nowait(exc)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self.state.ended and self.queue.empty():
            raise StopAsyncIteration
        return await self.next()

    async def next(self, timeout: float | None = None) -> Event:
        """The next event; RequestExpired if none arrives within ``timeout`` seconds."""
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise RequestExpired(f"no event within {timeout} s") from None
        if isinstance(item, SpaceError):
            raise item
        if item.kind == "close":
            self.client._notes.pop(self.state.seq, None)
        return item

    @property
    def last(self) -> int | None:
        return self.state.last

    async def close(self) -> None:
        if self.state.finish():
            self.client._notes.pop(self.state.seq, None)
            with contextlib.suppress(SpaceError):
                await self.client._call("unnotify", {"seq": self.state.seq}, give_up=1.0)
