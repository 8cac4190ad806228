"""Handles returned to callers: the entry of a written tuple, and notify events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

from onitu.space.errors import EventsLost


class Event(NamedTuple):
    """One notify event: ``kind`` is write, take, delete or close; ``id`` increases with every event."""

    id: int
    kind: str
    tuple: Any


class _Leases(Protocol):
    def _renew(self, eid: int, lease: Any) -> float | None: ...
    def _cancel(self, eid: int) -> Any: ...


class Entry:
    """A written tuple: renew its lease or cancel it (delete it now)."""

    __slots__ = ("_space", "id", "tuple")

    def __init__(self, space: _Leases, eid: int, tup: Any) -> None:
        self._space, self.id, self.tuple = space, eid, tup

    def renew(self, lease: float | str | None) -> float | None:
        """New lease in seconds (None: forever, "session"); returns the new deadline (epoch seconds) or None."""
        return self._space._renew(self.id, lease)

    def cancel(self) -> None:
        """Delete the tuple now (a ``delete`` event); NoSuchEntry if it is already gone."""
        self._space._cancel(self.id)

    def __repr__(self) -> str:
        return f"Entry({self.id}, {self.tuple!r})"


class EventStream:
    """Notify events as a blocking iterator: ``for event in stream`` waits as long as it takes."""

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return self.next()

    def next(self, timeout: float | None = None) -> Event:
        """The next event; RequestExpired if none arrives within ``timeout`` seconds."""
        raise NotImplementedError

    def next_open(self, timeout: float | None = None) -> Event:
        """:meth:`next`, for a reader that must see every event: the stream's end (a ``close`` event: the server
        ended the subscription, as when this client's session expired under load) raises EventsLost, so that the
        reader subscribes again and reads what it missed from the space."""
        event = self.next(timeout)
        if event.kind == "close":
            raise EventsLost("the space ended this subscription")
        return event
