"""A plug's order loop on an in-process space: each order carried out once, and its id forgotten once taken."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any

from onitu.sync import tuples
from onitu.sync.decide.plan import Mkdir
from onitu.sync.plug.orders import Started
from onitu.sync.plug.plug import Plug


def order(oid: int) -> tuple:
    action = tuples.action_to_wire(Mkdir(f"d{oid}", "a"))
    return (tuples.ORDER, "a", oid, {"folder": "docs", "actions": [action], "metas": [None]})


class WritesWhileReading:
    """The space, with an order written between the plug's subscription and its reading of the orders waiting:
    it comes both ways."""

    def __init__(self, space: Any, oid: int) -> None:
        self.space, self.oid = space, oid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.space, name)

    def read_all(self, template: Any, limit: int | None = None) -> list[Any]:
        if self.oid is not None:
            self.space.write(order(self.oid))
            self.oid = None
        return self.space.read_all(template, limit)


def wait_for(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def done(space: Any) -> list[int]:
    """The ids of the orders whose results the plug sent."""
    return [d[4]["order"] for d in space.read_all((tuples.DONE, "a", None, None, None))]


def test_orders_are_carried_out_once_and_their_ids_forgotten_once_taken(pair):
    a: Plug = pair["a"]
    space = a.space
    for oid in range(1, 51):  # waiting before the loop starts: read, not notified
        space.write(order(oid))
    a.taker.space = WritesWhileReading(space, 51)  # read and notified
    loop = threading.Thread(target=a.taker.run, daemon=True)
    loop.start()
    try:
        wait_for(lambda: len(a.taker.started) > 0, "the loop did not start")
        for oid in range(52, 301):  # notified only
            space.write(order(oid))
        wait_for(lambda: len(done(space)) >= 300, "not every order was carried out")
        wait_for(lambda: len(a.taker.started) == 0, "the ids of orders taken are still kept")
    finally:
        a.stop()
        loop.join(5)
    assert Counter(done(space)) == Counter(range(1, 301)), "an order was carried out twice, or not at all"
    assert not space.read_all((tuples.ORDER, "a", None, None))
    assert all(os.path.isdir(os.path.join(a.driver.root, f"d{oid}")) for oid in range(1, 301))


def test_after_lost_events_only_the_orders_still_waiting_are_kept():
    started = Started()
    assert started.fresh(1) and started.fresh(2) and started.fresh(3)
    assert not started.fresh(2), "an order seen twice is started once"
    started.resync([2, 4])  # 1 and 3 were taken while events were lost; 4 is new and not started yet
    assert started.ids == {2}
    assert started.fresh(4) and not started.fresh(2)
    started.taken(2)
    started.taken(2)
    assert started.ids == {4}
