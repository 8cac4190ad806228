"""Going through a big list so that its items are freed one by one, not all at once at the end.

A list of a million decoded records (the referee's ledger, read in one request at start) is freed in one C call
when its last reference goes: ten million objects deallocated with the GIL held, for seconds on a busy machine,
and the thread answering the watchdog's heartbeats cannot run meanwhile. The referee restarting a million-file hub
was killed as hung there, at the end of its ``for`` loop over the records, at every start. :func:`drained` hands
out the items and drops each one from the list as it goes: each is freed when the loop is done with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def drained(items: list[T]) -> Iterator[T]:
    """The items of ``items`` in order, each taken out of the list as it is handed out (the list ends empty)."""
    items.reverse()
    while items:
        yield items.pop()
