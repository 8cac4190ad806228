"""The in-process tuple space: thread-safe, blocking, the same methods as the network clients."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from onitu.space import numbers
from onitu.space.errors import Cancelled, RequestExpired, SpaceError
from onitu.space.handles import Entry, Event, EventStream
from onitu.space.protocol import packb
from onitu.space.store import HISTORY, Lease, Store
from onitu.space.template import Template

TemplateLike = Sequence | Mapping | Template


class WaitingRequest:
    """A blocked take/read, handed to ``on_wait``: ``cancel()`` makes it raise Cancelled."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel

    def cancel(self) -> None:
        self._cancel()


OnWait = Callable[[WaitingRequest], None] | None


def as_template(template: TemplateLike) -> Template:
    return template if isinstance(template, Template) else Template(template)


def check_timeout(timeout: float | None) -> None:
    numbers.timeout(timeout)


class _Result:
    """A one-shot slot a waiter callback fills from the store's thread."""

    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None

    def set(self, value: Any) -> None:
        self.value = value
        self.done.set()


class TupleSpace:
    """A Linda tuple space in this process.

    ``rinda_order=True`` reproduces Ruby Rinda's search order (symbol-headed tuples LIFO); the default is oldest
    first. Tuples written with ``lease="session"`` live until :meth:`close`.
    """

    def __init__(self, *, rinda_order: bool = False, history: int = HISTORY) -> None:
        self._store = Store(rinda_order=rinda_order, history=history)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._session = os.urandom(16)
        self._store.open_session(self._session, float("inf"))
        self._closed = False
        self._timer = threading.Thread(target=self._run_timers, name="onitu-space-timers", daemon=True)
        self._timer.start()

    # ---- operations --------------------------------------------------------------------------------------

    def write(self, tup: Sequence | Mapping, lease: Lease = None) -> Entry:
        with self._lock:
            before = self._store.next_deadline()
            eid = self._store.write(tup, lease, self._session)
            self._poke(before)
        return Entry(self, eid, tup)

    def take(self, template: TemplateLike, timeout: float | None = None, on_wait: OnWait = None) -> Any:
        """Remove and return the oldest match, waiting up to ``timeout`` s (None: forever, 0: not at all).

        ``on_wait(request)`` is called if the call has to wait; ``request.cancel()`` (from any thread) ends the
        wait with Cancelled, like the template handle Rinda passes to a block.
        """
        return self._find(as_template(template), True, timeout, on_wait)

    def read(self, template: TemplateLike, timeout: float | None = None, on_wait: OnWait = None) -> Any:
        """Like :meth:`take`, but leaves the tuple in place."""
        return self._find(as_template(template), False, timeout, on_wait)

    def read_all(self, template: TemplateLike, limit: int | None = None, packed: bool = False) -> list[Any]:
        """Every match, oldest first (at most ``limit``). ``packed``: each as its msgpack bytes, to decode one at a
        time with :func:`onitu.space.protocol.unpack_tuple` (a sync record decoded takes about five times its
        bytes: a million of them at once, gigabytes)."""
        with self._lock:
            found = self._store.read_all(as_template(template), limit)
        return [packb(tup) for tup in found] if packed else found

    def batch(self, ops: Iterable[Sequence]) -> list[Any]:
        """Atomic ``[("write", tup, lease), ("take", template), ("read", template), ("discard", template)]``: all or
        nothing (see :meth:`onitu.space.store.Store.batch`)."""
        with self._lock:
            before = self._store.next_deadline()
            results = self._store.batch(ops, self._session)
            self._poke(before)
        return results

    def notify(self, events: Iterable[str] | str, template: TemplateLike, lease: float | None = None,
               since: int | None = None) -> Notification:
        """Subscribe to ``events`` (write, take, delete, close) on tuples matching ``template``."""
        events = [events] if isinstance(events, str) else events
        note = Notification(self)
        with self._lock:
            before = self._store.next_deadline()
            note._sub = self._store.subscribe(events, as_template(template), note._queue.put, lease,
                                              self._session, since)
            self._poke(before)
        return note

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._store.stats()

    def close(self) -> None:
        """End the space's session (its session-leased tuples are deleted) and wake every blocked call."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._store.end_session(self._session)
            for waiter in list(self._store.waiters):
                self._store.cancel_wait(waiter, Cancelled("the tuple space was closed"))
            for sub in list(self._store.subs):
                self._store.close(sub)
            self._wake.notify()

    def __enter__(self) -> TupleSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------------------------

    def _find(self, template: Template, take: bool, timeout: float | None, on_wait: OnWait) -> Any:
        check_timeout(timeout)
        result = _Result()
        with self._lock:
            if self._closed:
                raise Cancelled("the tuple space is closed")
            found = self._store.take(template) if take else self._store.read(template)
            if found is not None:
                return found
            if timeout == 0:
                raise RequestExpired(f"no tuple matches {template.pattern!r}")
            before = self._store.next_deadline()
            waiter = self._store.wait(template, take, result.set, timeout, self._session)
            self._poke(before)
        if on_wait is not None:
            on_wait(WaitingRequest(lambda: self._withdraw(waiter)))
        try:
            result.done.wait()
        except BaseException:  # interrupted while blocked: withdraw the request so nothing is lost
            with self._lock:
                if waiter.active:
                    self._store.cancel_wait(waiter)
                elif take and not isinstance(result.value, SpaceError):
                    self._store.write(result.value)
            raise
        if isinstance(result.value, SpaceError):
            raise result.value
        return result.value

    def _withdraw(self, waiter: Any) -> None:
        with self._lock:
            self._store.cancel_wait(waiter)

    def _renew(self, eid: int, lease: Lease) -> float | None:
        with self._lock:
            before = self._store.next_deadline()
            deadline = self._store.renew(eid, lease, self._session)
            self._poke(before)
            return deadline

    def _poke(self, before: float | None) -> None:
        """Wake the timer thread only if the operation put a deadline before the one it waits for (waking it on
        every operation cost a thread switch each)."""
        after = self._store.next_deadline()
        if after is not None and (before is None or after < before):
            self._wake.notify()

    def _cancel(self, eid: int) -> Any:
        with self._lock:
            return self._store.cancel(eid)

    def _unsubscribe(self, note: Notification) -> None:
        with self._lock:
            if note._sub is not None:
                self._store.close(note._sub)

    def _run_timers(self) -> None:
        with self._lock:
            while not self._closed:
                self._store.reap()
                deadline = self._store.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._store.clock())
                self._wake.wait(timeout)


class Notification(EventStream):
    """An iterator of :class:`Event` s; ends after the ``close`` event. ``close()`` ends it early."""

    def __init__(self, space: TupleSpace) -> None:
        self._space = space
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._sub: Any = None
        self._ended = False

    def next(self, timeout: float | None = None) -> Event:
        if self._ended:
            raise StopIteration
        try:
            event = Event(*self._queue.get(timeout=timeout))
        except queue.Empty:
            raise RequestExpired(f"no event within {timeout} s") from None
        if event.kind == "close":
            self._ended = True
        return event

    def close(self) -> None:
        self._space._unsubscribe(self)
