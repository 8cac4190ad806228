"""The space of a build that no other process reaches (``Runtime`` kind "memory"): the part of a tuple space's API
the coordinator and its worker threads use, over plain dicts.

The in-process :class:`onitu.space.TupleSpace` would do, but it pays for what no such build needs (general
templates, leases, events kept for late subscribers, a timer thread, msgpack at import): a third of a no-op task's
cost went there. Here a template is a tuple whose ``None`` fields match anything and whose other fields match by
equality; tuples are kept by their head and the fields between head and last, so a task's result is found
without a scan and a worker's "any task" is the oldest of its head.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from queue import Empty, SimpleQueue
from typing import Any

from onitu.space.errors import Cancelled, RequestExpired


class MemoryEvent:
    """A notify event (``write`` only: the coordinator subscribes to its results being written)."""

    __slots__ = ("id", "kind", "tuple")

    def __init__(self, eid: int, kind: str, tup: tuple) -> None:
        self.id, self.kind, self.tuple = eid, kind, tup


class MemorySpace:
    """Thread-safe, blocking, in memory; tuples are stored as written (no copy: the writers never change them)."""

    def __init__(self) -> None:
        self._heads: dict[Any, dict[tuple, list[tuple]]] = {}  # head -> middle fields -> tuples, oldest first
        self._lock = threading.Lock()
        self._waiting: dict[Any, threading.Condition] = {}  # head -> where takes and reads of that head wait
        self._subs: list[tuple[tuple, SimpleQueue]] = []
        self._events = 0
        self._closed = False
        self.on_refused: Any = None  # set by a worker; no key is ever refused here

    # ---- operations -------------------------------------------------------------------------------------------

    def write(self, tup: tuple, lease: Any = None) -> None:
        """Store ``tup`` (``lease`` is ignored: the space lives exactly as long as its build)."""
        with self._lock:
            self._put(tup)
            self._wake(tup[0])

    def take(self, template: tuple, timeout: float | None = None) -> tuple:
        """Remove and return the oldest match, waiting up to ``timeout`` s (None: forever, 0: not at all)."""
        return self._wait(template, True, timeout)

    def read(self, template: tuple, timeout: float | None = None) -> tuple:
        return self._wait(template, False, timeout)

    def read_all(self, template: tuple, limit: int | None = None) -> list[tuple]:
        with self._lock:
            found = list(self._matches(template))
        return found if limit is None else found[:limit]

    def batch(self, ops: Iterable[Sequence]) -> list[Any]:
        """``[("write", tup[, lease]), ("take", template), ("read", template)]`` in order, all or nothing: a take or
        read that finds no match undoes the batch and raises RequestExpired."""
        results: list[Any] = []
        done: list[tuple[str, tuple]] = []
        with self._lock:
            for op in ops:
                if op[0] == "write":
                    self._put(op[1], notify=False)
                    done.append(("write", op[1]))
                    results.append(None)
                    continue
                found = next(self._matches(op[1]), None)
                if found is None:
                    for kind, tup in reversed(done):
                        self._remove(tup) if kind == "write" else self._put(tup, notify=False, first=True)
                    raise RequestExpired(f"no tuple matches {op[1]!r}")
                if op[0] == "take":
                    self._remove(found)
                    done.append(("take", found))
                results.append(found)
            for kind, tup in done:
                if kind == "write":
                    self._announce(tup)
                    self._wake(tup[0])
        return results

    def notify(self, events: str, template: tuple) -> MemoryNotification:
        """Subscribe to the writes of tuples matching ``template``."""
        if events != "write":
            raise ValueError(f"a build's memory space announces writes only, not {events!r}")
        note = MemoryNotification(self, template)
        with self._lock:
            self._subs.append((template, note.queue))
        return note

    def close(self) -> None:
        """Wake every blocked call with Cancelled; the space takes no more requests."""
        with self._lock:
            self._closed = True
            for cond in self._waiting.values():
                cond.notify_all()

    # ---- internals --------------------------------------------------------------------------------------------

    def _wait(self, template: tuple, take: bool, timeout: float | None) -> tuple:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            cond = self._waiting.get(template[0])
            if cond is None:
                cond = self._waiting[template[0]] = threading.Condition(self._lock)
            while True:
                if self._closed:
                    raise Cancelled("the build's space is closed")
                found = next(self._matches(template), None)
                if found is not None:
                    if take:
                        self._remove(found)
                    return found
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise RequestExpired(f"no tuple matches {template!r}")
                cond.wait(left)

    def _matches(self, template: tuple) -> Iterable[tuple]:
        middle = template[1:-1]
        heads = [template[0]] if template[0] is not None else list(self._heads)
        for head in heads:
            groups = self._heads.get(head)
            if not groups:
                continue
            if None not in middle:  # the usual case: one group, no scan
                candidates: Iterable[list[tuple]] = [groups.get(middle, [])]
            else:
                candidates = groups.values()
            for group in candidates:
                for tup in group:
                    if _fits(template, tup):
                        yield tup

    def _put(self, tup: tuple, *, notify: bool = True, first: bool = False) -> None:
        group = self._heads.setdefault(tup[0], {}).setdefault(tuple(tup[1:-1]), [])
        group.insert(0, tup) if first else group.append(tup)
        if notify:
            self._announce(tup)

    def _remove(self, tup: tuple) -> None:
        groups = self._heads[tup[0]]
        middle = tuple(tup[1:-1])
        group = groups[middle]
        group.remove(tup)
        if not group:
            del groups[middle]

    def _announce(self, tup: tuple) -> None:
        for template, queue in self._subs:
            if _fits(template, tup):
                self._events += 1
                queue.put(MemoryEvent(self._events, "write", tup))

    def _wake(self, head: Any) -> None:
        """Wake the calls waiting for tuples of this head only (waking every waiter on every write woke the worker
        slots for each result the coordinator was sent)."""
        for key in (head, None):  # None: waiting on any head
            cond = self._waiting.get(key)
            if cond is not None:
                cond.notify_all()

    def _unsubscribe(self, queue: SimpleQueue) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s[1] is not queue]


def _fits(template: tuple, tup: tuple) -> bool:
    return len(template) == len(tup) and all(t is None or t == v for t, v in zip(template, tup, strict=True))


class MemoryNotification:
    """The events of one subscription, as :class:`onitu.space.local.Notification` gives them."""

    def __init__(self, space: MemorySpace, template: tuple) -> None:
        self._space, self.template = space, template
        self.queue: SimpleQueue = SimpleQueue()

    def next(self, timeout: float | None = None) -> MemoryEvent:
        try:
            return self.queue.get(timeout=timeout)
        except Empty:
            raise RequestExpired(f"no event within {timeout} s") from None

    def next_open(self, timeout: float | None = None) -> MemoryEvent:
        """:meth:`next` (nothing but :meth:`close` ends this subscription)."""
        return self.next(timeout)

    def close(self) -> None:
        self._space._unsubscribe(self.queue)
