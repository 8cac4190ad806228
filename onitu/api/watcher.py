"""Process restarts and failovers as events: the watchdog's status, compared with what was last reported.

The watchdog writes ``run/status.json``; it is no client of the space. The API reads that file, and for each
process whose restart count grew, and for each new epoch of the space pair, writes an ``(api.event, kind, body)``
tuple (leased for an hour) that :mod:`onitu.api.events` turns into server-sent events. What was reported is kept
in the space too (``(api.seen, body)``), so an API restarted in between still reports what it missed, its own
restart included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from onitu.api.events import EVENT
from onitu.config import Config
from onitu.space.aio import AsyncSpaceClient
from onitu.space.errors import SpaceError
from onitu.supervision.launcher import status as supervised

log = logging.getLogger(__name__)

SEEN = "api.seen"
EVENT_LEASE = 3600.0
EVERY = 0.5  # seconds between two looks at the watchdog's status


def changes(seen: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The events between two summaries (see :func:`summary`)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for name, proc in now["processes"].items():
        before = seen["processes"].get(name)
        if before is not None and proc["restarts"] > before["restarts"]:
            found.append(("process.restarted", {"name": name, **proc}))
    if seen.get("epoch") is not None and (now.get("epoch") or 0) > seen["epoch"] \
            and now.get("primary") != seen.get("primary"):  # (pairing up also moves the epoch)
        found.append(("failover", {"epoch": now["epoch"], "primary": now.get("primary"),
                                   "previous": seen.get("primary")}))
    return found


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """What is compared: restarts (and the last reason) per process, the pair's epoch and primary."""
    return {"processes": {p["name"]: {"restarts": p.get("restarts") or 0, "reason": p.get("reason") or "",
                                      "role": p.get("role")} for p in run.get("processes", [])},
            "epoch": run.get("epoch"), "primary": run.get("primary")}


class Watcher:
    """Writes the events of :func:`changes` into the space while the API runs."""

    def __init__(self, config: Callable[[], Config], space: AsyncSpaceClient) -> None:
        self.config, self.space = config, space

    async def run(self) -> None:
        seen = None
        with contextlib.suppress(SpaceError, IndexError, TypeError):
            seen = (await self.space.read_all((SEEN, None)))[0][1]
        while True:
            run = supervised(self.config())
            if run and run.get("processes"):
                now = summary(run)
                try:
                    seen = await self._report(seen, now)
                except SpaceError as exc:  # the space is failing over: look again in a moment
                    log.info("cannot report process events yet: %s", exc)
            await asyncio.sleep(EVERY)

    async def _report(self, seen: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, Any]:
        events = changes(seen, now) if isinstance(seen, dict) and "processes" in seen else []
        if seen == now:
            return now
        ops: list[tuple] = [("write", (EVENT, kind, body), EVENT_LEASE) for kind, body in events]
        if await self.space.read_all((SEEN, None)):
            ops.append(("take", (SEEN, None)))
        ops.append(("write", (SEEN, now), None))
        await self.space.batch(ops)
        for kind, body in events:
            log.info("%s: %s", kind, body)
        return now
