"""A plug's outbox: items reach the space whole, in the order they were numbered, in shared batches."""

from __future__ import annotations

import threading

import pytest

from onitu.space import TupleSpace
from onitu.space.errors import Unavailable
from onitu.sync.plug.outbox import BATCH, Outbox


@pytest.fixture
def space():
    ts = TupleSpace()
    yield ts
    ts.close()


def written(space: TupleSpace) -> list[int]:
    return [t[1] for t in space.read_all(("item", None))]


def test_an_item_whose_take_fails_goes_without_it_in_its_place(space):
    """A result whose order the referee withdrew (its plug was gone a while) still tells what its actions did."""
    space.write(("order", 2))
    box = Outbox(space, threading.Event(), "svc")
    box.put([("write", ("item", 1), None)])
    box.put([("take", ("order", 99)), ("write", ("item", 99), None)])  # its order was withdrawn
    box.put([("take", ("order", 2)), ("write", ("item", 2), None)])
    box.put([("write", ("item", 3), None)])
    box.flush()
    assert written(space) == [1, 99, 2, 3]
    assert space.read_all(("order", None)) == []


def test_an_item_the_space_refuses_is_dropped_alone(space):
    box = Outbox(space, threading.Event(), "svc")
    box.put([("write", ("item", 1), None)])
    box.put([("write", ("item", 2, 1 << 70), None)])  # not a tuple the space takes
    box.put([("write", ("item", 3), None)])
    box.flush()
    assert written(space) == [1, 3]


def test_concurrent_flushes_keep_the_numbering_order(space):
    box = Outbox(space, threading.Event(), "svc")
    numbering = threading.Lock()
    counter = iter(range(10_000))

    def work() -> None:
        for _ in range(100):
            with numbering:  # as the plug does: the number and the place in the queue under one lock
                box.put([("write", ("item", next(counter)), None)])
            box.flush()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert written(space) == list(range(800))


class Flaky:
    """A space that is away for the first few batches."""

    def __init__(self, space: TupleSpace, away: int) -> None:
        self.space, self.away = space, away

    def batch(self, ops):
        if self.away:
            self.away -= 1
            raise Unavailable("failing over")
        return self.space.batch(ops)


def test_a_space_away_is_waited_for_and_nothing_is_lost_on_stop(space, monkeypatch):
    monkeypatch.setattr("onitu.sync.plug.outbox.RETRY", 0.01)
    box = Outbox(Flaky(space, 3), threading.Event(), "svc")  # type: ignore[arg-type]
    box.put([("write", ("item", 1), None)])
    box.flush()
    assert written(space) == [1]
    stop = threading.Event()
    stop.set()
    box = Outbox(Flaky(space, 1), stop, "svc")  # type: ignore[arg-type]
    box.put([("write", ("item", 2), None)])
    with pytest.raises(Unavailable):
        box.flush()
    box.flush()  # the item stayed queued, first in line
    assert written(space) == [1, 2]


def test_a_long_flush_tells_the_heartbeat_it_moves(space):
    """A million entries' reports take many batches (minutes on a busy space): each batch sent is progress, so the
    plug's heartbeat keeps answering (without it, the source plug of a million files was restarted mid-flush)."""
    box = Outbox(space, threading.Event(), "svc")
    beats: list[int] = []
    box.beat = lambda: beats.append(len(written(space)))
    for n in range(10 * BATCH):
        box.put([("write", ("item", n), None)])
    box.flush()
    assert len(written(space)) == 10 * BATCH
    assert len(beats) == 10 and beats == sorted(beats) and beats[0] == BATCH


def test_a_held_sender_goes_on_once_its_items_are_taken_or_the_plug_stops(space, monkeypatch):
    """``hold`` waits while something matches, beating meanwhile; it returns at once when nothing does, when the
    plug stops, and when the space cannot tell (the outbox's own retries deal with an absent space)."""
    monkeypatch.setattr("onitu.sync.plug.outbox.HOLD_POLL", (0.01, 0.05))
    stop = threading.Event()
    box = Outbox(space, stop, "svc")
    beats: list[int] = []
    box.beat = lambda: beats.append(1)
    box.hold(("item", None))  # nothing waits
    space.write(("item", 1))
    threading.Timer(0.3, lambda: space.take(("item", 1))).start()
    box.hold(("item", None))
    assert not space.read_all(("item", None)) and len(beats) >= 3
    space.write(("item", 2))
    threading.Timer(0.2, stop.set).start()
    box.hold(("item", None))
    assert stop.is_set() and space.read_all(("item", None))

    class Away:
        def read_all(self, template, limit=None):
            raise Unavailable("failing over")
    Outbox(Away(), threading.Event(), "svc").hold(("item", None))  # type: ignore[arg-type]
