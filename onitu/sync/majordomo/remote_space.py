"""What an agent's plugs take for the space: the same methods as :class:`onitu.space.client.SpaceClient` that a
plug uses, carried by the agent's :class:`~onitu.sync.majordomo.link.Link` to the majordomo.

Two things differ from a direct client, so the plug itself needs no change: the plug tuples it writes tell the
link where the agent's own chunk servers are, and the plug tuples it reads name the link's local relay as every
source's chunk server (with the service's name where the secret would be), so its fetches go through the hub.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from onitu.space.errors import RequestExpired, SpaceError
from onitu.space.handles import Event, EventStream
from onitu.space.protocol import as_tuple
from onitu.sync import tuples
from onitu.sync.majordomo.link import Link


class RelayedNotification(EventStream):
    """A notify stream relayed by the majordomo; ends with EventsLost when the connection is lost."""

    def __init__(self, link: Link, nid: int, events: queue.SimpleQueue) -> None:
        self.link, self.nid, self.events = link, nid, events

    def next(self, timeout: float | None = None) -> Event:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            raise RequestExpired(f"no event within {timeout} s") from None
        if isinstance(item, SpaceError):
            raise item
        return item

    def close(self) -> None:
        self.link.unsubscribe(self.nid)


class RelayedSpace:
    """The space as an agent's plugs see it."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def write(self, tup: Sequence | Mapping, lease: Any = None) -> None:
        self._note_plug(tup)
        self.link.call("write", {"t": tup, "lease": lease})

    def take(self, template: Any, timeout: float | None = None) -> Any:
        return self._found(self.link.call("take", {"p": template, "timeout": timeout}))

    def read(self, template: Any, timeout: float | None = None) -> Any:
        return self._found(self.link.call("read", {"p": template, "timeout": timeout}))

    def read_all(self, template: Any, limit: int | None = None) -> list[Any]:
        found = [as_tuple(t) for t in self.link.call("read_all", {"p": template, "limit": limit})]
        if template[0] == tuples.PLUG:
            return [self._through_relay(t) for t in found]
        return found

    def batch(self, ops: Iterable[Sequence]) -> list[Any]:
        ops = [list(op) for op in ops]
        for op in ops:
            if op[0] == "write":
                self._note_plug(op[1])
        self.link.call("batch", {"ops": ops})
        return []

    def notify(self, events: Iterable[str] | str, template: Any) -> RelayedNotification:
        events = [events] if isinstance(events, str) else list(events)
        return RelayedNotification(self.link, *self.link.subscribe(events, template))

    def close(self) -> None:
        self.link.close()

    @staticmethod
    def _found(value: Any) -> Any:
        return None if value is None else as_tuple(value)

    def _note_plug(self, tup: Any) -> None:
        if isinstance(tup, Sequence) and len(tup) == 3 and tup[0] == tuples.PLUG and isinstance(tup[2], dict):
            info = tup[2]
            self.link.serves(tup[1], str(info["endpoint"]), str(info["key"]), str(info["secret"]))

    def _through_relay(self, tup: tuple) -> tuple:
        _, service, info = tup
        return (tuples.PLUG, service, {**info, "endpoint": self.link.relay_endpoint, "key": self.link.relay_key,
                                       "secret": service})
