"""The store's bookkeeping: Rinda's TupleBag cases, leases, sessions, and that indexes bound the work."""

from __future__ import annotations

import pytest

from onitu.space import NoSuchEntry, Symbol, Template
from onitu.space.index import FifoIndex
from onitu.space.packed import unpack_held
from onitu.space.store import Store

V = Symbol("val")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tuplebag_delete_keeps_the_twin():
    store = Store()
    e1 = store.write((V, 1))
    store.write((V, 1))
    store.cancel(e1)
    assert store.read_all(Template((V, 1))) == [(V, 1)]
    with pytest.raises(NoSuchEntry):
        store.cancel(e1)


def test_tuplebag_find_skips_cancelled_and_expired():
    clock = Clock()
    store = Store(clock=clock)
    template = Template((V, None))
    store.write((Symbol("other"), 1))
    assert store.read(template) is None
    e2 = store.write((V, 1))
    assert store.read(template) == (V, 1)
    store.cancel(e2)
    assert store.read(template) is None
    store.write((V, 3), lease=5)
    assert store.read_all(template) == [(V, 3)]
    clock.now += 5
    assert store.read(template) is None and store.read_all(template) == []


def test_waiters_are_served_in_registration_order():
    store = Store()
    got: list = []
    store.wait(Template((V, None)), True, lambda r: got.append(("first", r)))
    store.wait(Template((V, None)), True, lambda r: got.append(("second", r)))
    store.write((V, 1))
    store.write((V, 2))
    assert got == [("first", (V, 1)), ("second", (V, 2))]
    assert store.read_all(Template((V, None))) == []


def test_session_end_deletes_its_tuples_with_delete_events():
    store = Store()
    events: list = []
    store.subscribe(["delete"], Template((None,)), events.append)
    store.open_session(b"s" * 16, 5.0)
    store.write(("mine",), lease="session", session=b"s" * 16)
    store.write(("kept",))
    store.end_session(b"s" * 16)
    assert store.read_all(Template((None,))) == [("kept",)]
    assert [(kind, tup) for _, kind, tup in events] == [("delete", ("mine",))]


def test_session_ttl_expiry():
    clock = Clock()
    store = Store(clock=clock)
    store.open_session(b"s" * 16, 2.0)
    store.write(("mine",), lease="session", session=b"s" * 16)
    clock.now += 1.5
    assert store.touch(b"s" * 16)
    clock.now += 1.5
    store.reap()
    assert store.read_all(Template((None,))) == [("mine",)]  # touched: still alive
    clock.now += 2.5
    store.reap()
    assert store.read_all(Template((None,))) == [] and not store.touch(b"s" * 16)


class CountingIndex(FifoIndex):
    """Counts the candidates a lookup yields, to check that unrelated tuples are never visited."""

    visited = 0

    def candidates(self, template, all_matches):
        for eid in super().candidates(template, all_matches):
            CountingIndex.visited += 1
            yield eid


def test_leading_constants_do_not_scan_unrelated_tuples():
    store = Store()
    store.index = CountingIndex(store.live)
    for i in range(20_000):
        store.write(("noise", i, "x"))
        store.write(("task", i % 100, "y"))
    CountingIndex.visited = 0
    assert store.take(Template(("task", 42, None))) == ("task", 42, "y")
    assert CountingIndex.visited == 1
    CountingIndex.visited = 0
    assert store.read(Template(("task", None, "y"))) == ("task", 0, "y")
    assert CountingIndex.visited == 1
    CountingIndex.visited = 0
    assert len(store.read_all(Template(("task", 7, None)))) == 200
    assert CountingIndex.visited == 200  # exactly the ("task", 7) bucket


def test_fifo_takes_stay_constant_work_after_many_removals():
    store = Store()
    store.index = CountingIndex(store.live)
    for i in range(10_000):
        store.write(("q", i))
    for i in range(9_000):
        assert store.take(Template(("q", None))) == ("q", i)
    CountingIndex.visited = 0
    assert store.take(Template(("q", None))) == ("q", 9000)
    assert CountingIndex.visited == 1  # tombstones were dropped, not walked again


def test_index_handles_unhashable_and_mixed_heads():
    store = Store()
    store.write(([1], "list head"))
    store.write((1, "int head"))
    store.write((True, "bool head"))
    store.write((1.0, "float head"))
    assert store.read_all(Template((1, None))) == [(1, "int head"), (1.0, "float head")]
    assert store.read_all(Template(([1.0], None))) == [([1], "list head")]
    assert store.read_all(Template((True, None))) == [(True, "bool head")]


def test_resume_beyond_the_retained_history_is_refused():
    from onitu.space import EventsLost

    store = Store(history=3)
    for i in range(6):
        store.write(("e", i))
    with pytest.raises(EventsLost):
        store.subscribe(["write"], Template(("e", None)), lambda e: None, since=1)
    replayed: list = []
    store.subscribe(["write"], Template(("e", None)), replayed.append, since=store.event_id - 2)
    assert [tup for _, _, tup in replayed] == [("e", 4), ("e", 5)]


# ---- a packed store (the server's) answers as a store of Python objects does ----------------------------------

# b"x" * 5000: a tuple a packed store holds decoded (it is big), beside the others it holds as bytes
VALUES = [0, 1, 1.0, True, False, None, "a", "b", b"a", V, Symbol("other"), [1, "a"], {"k": [1.0]}, 3.5, b"x" * 5000]


def _random_tuple(rng):
    if rng.random() < 0.2:
        return {"k": rng.choice(VALUES), "n": rng.randrange(4)}
    return (rng.choice(["t", "u", V]), rng.choice(VALUES), rng.randrange(4))


def _random_template(rng):
    if rng.random() < 0.2:
        return Template({"k": rng.choice([None, *VALUES[:6]]), "n": rng.choice([None, int, 1])})
    return Template((rng.choice(["t", "u", V, None]), rng.choice([None, int, str, *VALUES]),
                     rng.choice([None, int, 2, 1.0])))


def _random_op(rng, store, sid, clock):
    """One random operation: its result (or the error it raised), for comparison with the other store's."""
    op = rng.random()
    try:
        if op < 0.35:
            return store.write(_random_tuple(rng), rng.choice([None, None, 5.0, "session"]), sid)
        if op < 0.5:
            return store.take(_random_template(rng))
        if op < 0.6:
            return store.read(_random_template(rng))
        if op < 0.7:
            return store.read_all(_random_template(rng))
        if op < 0.8:
            return store.batch([("write", _random_tuple(rng), None), ("take", _random_template(rng)),
                                ("read", _random_template(rng))], sid)
        if op < 0.88 and store.live:
            return store.cancel(sorted(store.live)[rng.randrange(len(store.live))])
        if op < 0.94 and store.live:
            return store.renew(sorted(store.live)[rng.randrange(len(store.live))], rng.choice([None, 2.0]), sid)
        clock.now += rng.choice([1.0, 3.0, 6.0])
        return store.reap()
    except Exception as exc:
        return type(exc).__name__


@pytest.mark.parametrize("seed", range(6))
def test_a_packed_store_answers_as_the_store_of_objects_does(seed):
    import random

    stores, events, clocks = [], [], []
    for packed in (False, True):
        clock = Clock()
        store = Store(clock=clock, packed=packed)
        store.open_session(b"s" * 16, 100.0)
        seen: list = []
        store.subscribe(["write", "take", "delete"], Template(("t", None, None)), seen.append)
        stores.append(store), events.append(seen), clocks.append(clock)
    results = [[_random_op(random.Random(f"{seed}/{i}"), store, b"s" * 16, clock) for i in range(400)]
               for store, clock in zip(stores, clocks, strict=True)]
    assert results[0] == results[1]
    assert events[0] == events[1]
    everything = Template((None, None, None))
    assert stores[0].read_all(everything) == stores[1].read_all(everything)
    for head in (("t", None, None), ("t", "a", None), (V, None, None), ("u", b"a", None)):  # matched undecoded
        template = Template(head)
        encoded = [unpack_held(x) for x in stores[1].read_all(template, encoded=True)]
        assert stores[0].read_all(template) == stores[1].read_all(template) == encoded
    # the history a resumed notify replays, decoded from the packed one's bytes
    replays: list[list] = [[], []]
    for store, replay in zip(stores, replays, strict=True):
        store.subscribe(["write", "take", "delete"], everything, replay.append, since=0)
    assert replays[0] == replays[1] and len(replays[0]) > 100


# ---- keys shared for a while, then held by one tuple again -------------------------------------------------------

# 1 and 1 + 2**30 (likewise 2) have the same 30-bit hash: a key left alone finds its hash slot taken as often as free
SHARED_KEYS = [1, 2, 3, 1 + 2**30, 2 + 2**30, "path/a", "path/b"]


@pytest.mark.parametrize("seed", range(8))
def test_keys_shared_then_held_by_one_tuple_are_found_oldest_first_and_unshared(seed):
    """A key held by several tuples is filed as itself; held by one again, under its hash if its slot is free.
    Through any sequence of writes and takes, every take and read finds what a scan of the live tuples finds, and a
    key left with one tuple keeps no bucket."""
    import random

    rng = random.Random(seed)
    store, model = Store(packed=True), []
    for n in range(3000):
        key = rng.choice(SHARED_KEYS)
        if rng.random() < 0.5:
            tup = ("rec", key, n)
            store.write(tup)
            model.append(tup)
        else:
            expected = next((t for t in model if t[1] == key), None)
            assert store.take(Template(("rec", key, None))) == expected
            if expected is not None:
                model.remove(expected)
        probe = rng.choice(SHARED_KEYS)
        assert store.read_all(Template(("rec", probe, None))) == [t for t in model if t[1] == probe]
    for key in SHARED_KEYS:  # down to one tuple per key
        while len([t for t in model if t[1] == key]) > 1:
            model.remove(store.take(Template(("rec", key, None))))
    head = store.index.by_head[(3, "rec")]
    assert not any(type(held) is not int for held in head.second.values())
    assert store.read_all(Template(("rec", None, None))) == model


def test_a_replica_applying_replaced_records_keeps_no_bucket_per_key():
    """A record replaced by a discard and a write, as the referee does, reaches a replica as one batch; the replica
    files each key as the primary does (once it kept a bucket and the decoded key of every record: 200 bytes more
    per tracked file than its primary)."""
    from onitu.space.durable import Durable
    from onitu.space.protocol import as_tuple, unpackb

    primary, replica = Store(packed=True), Store(packed=True)
    paths = [f"docs/d{i // 10}/f{i}.txt" for i in range(100)]
    for version in range(3):
        ops = [op for p in paths for op in ([("discard", ("meta", p, None))] if version else [])
               + [("write", ("meta", p, version), None)]]
        primary.batch(ops)
        replica.mirror(Durable.encode(primary.drain()), lambda body: as_tuple(unpackb(body)))
    for store in (primary, replica):
        head = store.index.by_head[(3, "meta")]
        assert len(head.second) == 0 and len(head.single) == len(paths)
    everything = Template((None, None, None))
    assert replica.read_all(everything) == primary.read_all(everything)
