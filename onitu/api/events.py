"""Live events: ``GET /api/events`` as server-sent events, made from the space's own notify streams.

Every event a client sees is a tuple written or taken in the space, translated (``file.changed``,
``transfer.started`` / ``progress`` / ``done``, ``conflict``, ``replica.unavailable`` / ``available``,
``deletions.held``, ``process.restarted``, ``failover``, ...). The hub's tuples come in two shapes, and a notify
follows one template, so each client has two notify streams; an event's SSE id is the pair of the two streams'
positions (``"A:B"``, space event ids), and a client reconnecting with ``Last-Event-ID: A:B`` is resumed from both:
it gets exactly what it missed, across a restart of the API (the positions are the space's) and a failover (the
secondary holds the same event history). When the space no longer holds what was missed (its history is bounded,
and a space restarted from disk starts a new one), the client gets a ``resync`` event: read the state again.

Process restarts and failovers are not tuples of their own: the API's watcher notices them in
the watchdog's status and writes an ``api.event`` tuple (:mod:`onitu.api.watcher`), so they travel, and resume,
like the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Header
from fastapi.sse import EventSourceResponse, ServerSentEvent

from onitu.space.aio import AsyncNotification, AsyncSpaceClient
from onitu.space.errors import EventsLost, SpaceError
from onitu.sync import tuples
from onitu.sync.state import record

__all__ = ["EVENT", "EventSourceResponse", "Events"]

log = logging.getLogger(__name__)

EVENT: str = "api.event"  # (EVENT, kind, body): a process restart or a failover, as the watcher saw it

# (events, template) of each stream, in the order of the id's parts
STREAMS: tuple[tuple[list[str], tuple], ...] = (
    (["write", "take", "delete"], (re.compile(r"^(sync\.(meta|plug|progress)|api\.event)$"), None, None)),
    (["write", "take"], (re.compile(r"^sync\.(conflict|pending|order)$"), None, None, None)),
)


def parse_id(text: str | None) -> list[int | None]:
    """The stream positions of a ``Last-Event-ID`` (one number means the same for every stream)."""
    parts = (text or "").strip().split(":")
    if not text or not all(p.isdigit() and len(p) < 20 for p in parts) or len(parts) not in (1, len(STREAMS)):
        return [None] * len(STREAMS)
    return [int(p) for p in parts] * (len(STREAMS) // len(parts))


def format_id(positions: list[int | None]) -> str:
    return ":".join(str(p or 0) for p in positions)


def translate(kind: str, tup: Any) -> tuple[str, dict[str, Any]] | None:
    """The SSE event (name, data) a space event means to the page, or None when it means nothing to it."""
    if not isinstance(tup, tuple) or not tup:
        return None
    tag = tup[0]
    try:
        if tag == tuples.META and kind == "write":
            folder, path = tuples.split_meta_key(tup[1])
            meta, holders, _ = record.decode(path, tup[2])
            name = "file.deleted" if meta.tombstone else "file.changed"
            return name, {"folder": folder, "path": path, "kind": meta.kind, "size": meta.size,
                          "sha256": meta.sha256, "holders": holders}
        if tag == tuples.PLUG and kind in ("write", "delete"):
            info = tup[2] if kind == "write" and isinstance(tup[2], dict) else {}
            up = bool(info.get("available"))
            reason = None if up else str(info.get("reason") or "its plug stopped")
            return ("replica.available" if up else "replica.unavailable"), {"service": tup[1], "reason": reason}
        if tag == tuples.PROGRESS and kind == "write":
            return "transfer.progress", {"service": tup[1], "transfers": {
                str(p): {"done": v[0], "size": v[1]} for p, v in tup[2].items()}}
        if tag == EVENT and kind == "write":
            return str(tup[1]), dict(tup[2])
        if tag == tuples.CONFLICT:
            if kind == "take":
                return "conflict.resolved", {"folder": tup[1], "conflict": tup[2]}
            return "conflict", {"folder": tup[1], "conflict": tup[2], **{k: tup[3].get(k) for k in
                                                                         ("path", "service", "when")}}
        if tag == tuples.PENDING:
            if kind == "take":
                return "deletions.released", {"folder": tup[1], "service": tup[2]}
            return "deletions.held", {"folder": tup[1], "service": tup[2], "deleted": tup[3].get("deleted"),
                                      "total": tup[3].get("total")}
        if tag == tuples.ORDER:
            actions = map(tuples.action_as_dict, tup[3].get("actions", []))  # rows or dicts (tuples.order_body)
            copies = [a for a in actions if isinstance(a, dict) and a.get("op") == "copy"]
            if copies:
                name = "transfer.done" if kind == "take" else "transfer.started"
                return name, {"service": tup[1], "folder": tup[3].get("folder"), "files": len(copies),
                              "bytes": sum(int(a.get("size") or 0) for a in copies),
                              "paths": [str(a.get("path")) for a in copies[:20]]}
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        log.debug("an event the page cannot use: %s %r: %s", kind, tup[:2], exc)
    return None


class Events:
    """The ``/api/events`` route, over one asyncio client of the space shared by every connection."""

    def __init__(self, space: Callable[[], AsyncSpaceClient]) -> None:
        self._space = space

    async def route(self, last_event_id: Annotated[str | None, Header()] = None
                    ) -> AsyncIterator[ServerSentEvent]:
        """Live events; ``Last-Event-ID`` resumes after the event that carried that id."""
        space = self._space()
        positions = parse_id(last_event_id)
        notes: list[AsyncNotification | None] = [None] * len(STREAMS)
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=10_000)
        readers: list[asyncio.Task] = []
        try:
            lost = False
            for i, (kinds, template) in enumerate(STREAMS):
                notes[i], missed = await _subscribe(space, kinds, template, positions[i])
                lost |= missed
                if missed or positions[i] is None:  # else the replayed events are still to come
                    positions[i] = notes[i].last
            resumed = last_event_id is not None and not lost
            yield ServerSentEvent(event="resync" if lost else "hello", id=format_id(positions),
                                  data={"resumed": resumed}, retry=1000)
            readers = [asyncio.create_task(_read(i, note, queue)) for i, note in enumerate(notes)]
            while True:
                i, event = await queue.get()
                if isinstance(event, EventsLost):  # fell behind the space's history: start afresh
                    notes[i], _ = await _subscribe(space, *STREAMS[i], None)
                    positions[i] = notes[i].last
                    readers[i] = asyncio.create_task(_read(i, notes[i], queue))
                    yield ServerSentEvent(event="resync", id=format_id(positions), data={"resumed": False})
                    continue
                if isinstance(event, BaseException):
                    raise event
                positions[i] = event.id
                found = translate(event.kind, event.tuple)
                if found is not None:
                    yield ServerSentEvent(event=found[0], id=format_id(positions), data=found[1])
        finally:
            for task in readers:
                task.cancel()
            for note in notes:
                if note is not None:
                    with contextlib.suppress(SpaceError, RuntimeError):
                        await note.close()


async def _subscribe(space: AsyncSpaceClient, kinds: list[str], template: tuple, since: int | None
                     ) -> tuple[AsyncNotification, bool]:
    """A notify from ``since``; from now (and True: events were lost) when the space no longer holds them."""
    try:
        return await space.notify(kinds, template, since=since), False
    except EventsLost:
        return await space.notify(kinds, template), True


async def _read(i: int, note: AsyncNotification, queue: asyncio.Queue) -> None:
    try:
        async for event in note:
            if event.kind == "close":  # the space ended the subscription (took the session for dead): again
                raise EventsLost("the space ended this subscription")
            await queue.put((i, event))
    except SpaceError as exc:
        await queue.put((i, exc))
