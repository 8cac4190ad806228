"""The server's memory per tuple and per event, counted by tracemalloc (allocations, not timing): a sync hub holds
a tuple per file and a full notify history, so bookkeeping bytes per entry multiply by hundreds of thousands."""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc

import pytest

from onitu.space import EventsLost, Template
from onitu.space.history import History
from onitu.space.packed import unpack_held
from onitu.space.protocol import unpackb
from onitu.space.slots import HashSlots
from onitu.space.store import Store

N = 5_000


def _allocated(build):
    """(what ``build()`` returns, the bytes it left allocated)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        built = build()
        gc.collect()
        return built, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _hub_record(i: int) -> tuple:
    path = f"d{i // 100:05d}/f{i:07d}.txt"
    return ("sync.meta", f"f/{path}", {"meta": {"path": path, "sha256": f"{i:064x}"}, "holders": ["source"]})


def test_a_history_event_costs_a_few_bytes_beside_its_body():
    def fill():
        store = Store(history=2 * N, packed=True)
        for i in range(N):  # a write and a take each: 2 N events, whose bodies only the history keeps
            store.write(_hub_record(i))
            store.take(Template(("sync.meta", None, None)))
            store.drain()  # the change records a server commits at each turn
        return store

    store, allocated = _allocated(fill)
    assert len(store.history) == 2 * N
    bodies = sum(sys.getsizeof(body) for _, kind, body in store.history if kind == "take")  # shared with its write
    assert (allocated - bodies) / (2 * N) < 32  # a tuple and an int per event were over 100 bytes (17 in a History)


def test_a_secondarys_history_shares_the_kinds_it_receives():
    events = [unpackb(b"\x93\xcd\x03\xe8\xa5write\xc4\x01x") for _ in range(3)]  # [1000, "write", b"x"], 3 copies
    history = History(10)
    history.extend([[i, kind, body] for i, (_, kind, body) in enumerate(events, 1000)])
    assert len({id(kind) for _, kind, _ in history}) == 1


def test_history_keeps_the_newest_events_in_order_across_gaps():
    history = History(4)
    for event_id in (1, 2, 3, 7, 8, 20):  # a promoted secondary numbers on from a new generation
        history.append((event_id, "take", bytes([event_id])))
    assert [e[0] for e in history] == [3, 7, 8, 20] and history.oldest() == 3
    assert list(reversed(history)) == list(history)[::-1]
    assert [body for _, _, body in history] == [b"\x03", b"\x07", b"\x08", b"\x14"]
    history.clear()
    assert list(history) == [] and history.oldest() is None


def test_history_holds_a_bounded_number_of_bytes_and_a_resume_from_before_them_is_refused():
    """A restarted hub lists every file again in reports of 150 KB (written, then taken): held by event count
    alone, 20,000 of them were gigabytes in each space server."""
    history = History(1000, max_bytes=10_000)
    for event_id in range(1, 11):
        history.append((event_id, "write", b"r" * 3000))
    assert [e[0] for e in history] == [8, 9, 10] and history.size == 9000
    history.append((11, "take", b"x" * 50_000))  # bigger than the bound alone: still the newest event, kept
    assert [e[0] for e in history] == [11] and history.size == 50_000
    history.append((12, "write", b"small"))
    assert [e[0] for e in history] == [12] and history.oldest() == 12

    store = Store(history=1000, packed=True)
    store.history.max_bytes = 20_000
    store.write(("first", 0))
    since = store.event_id
    for i in range(20):
        store.write(("report", i, "e" * 3000))
    assert len(store.history) < 10
    with pytest.raises(EventsLost):
        store.subscribe(["write"], Template(("report", None, None)), lambda e: None, since=since)
    replayed: list = []
    store.subscribe(["write"], Template(("report", None, None)), replayed.append, since=store.event_id - 2)
    assert [tup[1] for _, _, tup in replayed] == [18, 19]


def test_events_not_shipped_yet_are_kept_past_the_bounds_until_they_are():
    """A primary's turn of big events is held whole until it is shipped; then the bounds apply again."""
    history = History(5, max_bytes=10_000)
    for event_id in range(1, 4):
        history.append((event_id, "write", b"s"))
    history.unshipped = 3
    for event_id in range(4, 12):
        history.append((event_id, "write", b"b" * 3000))
    assert [e[0] for e in history] == list(range(4, 12)), "an event not shipped yet was dropped"
    history.unshipped = 11
    history.append((12, "write", b"s"))
    assert [e[0] for e in history] == [9, 10, 11, 12] and history.size == 9001


def test_a_big_tuple_of_many_small_entries_is_held_as_its_bytes():
    """A plug's report (a thousand entries) took four times its bytes decoded; a restarted hub held hundreds."""
    entries = [[f"d{i // 100:04d}/f{i:06d}.txt", ["file", f"{i:064x}", 4096, 1733600000 + i]] for i in range(1000)]
    report = ("sync.report", "source", "plug", 7, {"folder": "docs", "entries": entries})
    store, allocated = _allocated(lambda: _store_with(report))
    body = next(iter(store.live.values()))
    assert type(body) is bytes and allocated < 1.3 * len(body), (allocated, len(body))
    assert store.take(Template(("sync.report", "source", None, 7, None))) == report
    assert list(store.history)[-1][2] is body  # the take's event shares the bytes, as the write's does


def _store_with(tup: tuple) -> Store:
    store = Store(packed=True)
    store.write(tup)
    store.drain()
    return store


def test_a_stored_record_costs_little_beside_its_bytes():
    def fill():
        store = Store(packed=True)
        for i in range(N):
            store.write(_hub_record(i))
        store.drain()
        return store

    store, allocated = _allocated(fill)
    bodies = sum(sys.getsizeof(held) for held in store.live.values())
    # the entry's id, its slots in the live table and the index (with room to grow), its key's 30-bit hash in an
    # array (114 bytes as tracemalloc counts them); its decoded path in a dict, and an id made by a sum, made 185
    assert (allocated - bodies) / N < 135


def _colliding_keys() -> tuple[str, str]:
    """Two strings whose hashes agree in the 30 bits the index files a unique key under (hashes vary per process)."""
    seen: dict[int, str] = {}
    for i in range(1_000_000):
        key = f"k{i}"
        other = seen.setdefault(hash(key) & ((1 << 30) - 1), key)
        if other != key:
            return other, key
    raise AssertionError("no two keys share 30 bits of hash")


def test_keys_filed_under_one_hash_are_told_apart():
    a, b = _colliding_keys()
    n = hash(a) & ((1 << 30) - 1)  # an int that is its own hash: the same slot as a and b
    for packed in (False, True):
        store = Store(packed=packed)
        eb = store.write(("t", b, 0))
        store.cancel(eb)
        ea = store.write(("t", a, 1))
        store.write(("t", n, 2))
        store.write(("t", b, 3))
        store.write(("t", a, 4))
        for key, want in ((a, [("t", a, 1), ("t", a, 4)]), (b, [("t", b, 3)]), (n, [("t", n, 2)])):
            template = Template(("t", key, None))
            assert store.read_all(template) == want
            assert [unpack_held(x) for x in store.read_all(template, encoded=True)] == want
        store.cancel(ea)
        assert store.take(Template(("t", a, None))) == ("t", a, 4)
        assert store.take(Template(("t", b, None))) == ("t", b, 3)
        assert store.read_all(Template(("t", None, None))) == [("t", n, 2)]
        assert store.take(Template(("t", n, None))) == ("t", n, 2)
        assert not store.live


def test_hash_slots_answer_as_a_dict_does():
    rng = random.Random(7)
    slots, model = HashSlots(), {}
    for _ in range(20_000):  # hashes from a small range: long probe runs, removed slots reused, tables resized
        hashed = rng.randrange(1024) | rng.randrange(4) << 20
        if hashed in model and rng.random() < 0.6:
            assert slots.pop(hashed) == model.pop(hashed)
        elif hashed not in model:
            model[hashed] = eid = rng.randrange(1 << 40)
            slots.add(hashed, eid)
        assert slots.get(hashed) == model.get(hashed) and len(slots) == len(model)
    assert all(slots.get(h) == e for h, e in model.items())
    with pytest.raises(KeyError):
        slots.pop(1 << 29)


def test_a_secondarys_history_keeps_one_copy_of_each_body():
    def copy(body: bytes) -> bytes:  # as the wire brings them: equal bytes, distinct objects
        return bytes(bytearray(body))

    row = [7, copy(b"meta"), None, None]
    events = [[1, "write", copy(b"meta")], [2, "write", copy(b"order")], [3, "take", copy(b"order")]]
    history = History(10)
    history.extend_sharing(events, [row])
    bodies = [body for _, _, body in history]
    assert bodies == [b"meta", b"order", b"order"]
    assert bodies[0] is row[1] and bodies[1] is bodies[2]


def test_the_live_table_is_sized_again_after_churn():
    store = Store(packed=True)
    for i in range(40_000):  # records that stay, and orders written and taken among them
        store.write(("rec", i))
        store.write(("order", i))
        store.take(Template(("order", i)))
    roomy = sys.getsizeof(store.live)
    store.drain()  # the end of a turn
    assert sys.getsizeof(store.live) <= 64 * len(store.live) < roomy  # 105 bytes per tuple before: grown, kept
    assert store.index.live is store.live
    assert store.take(Template(("rec", 7))) == ("rec", 7)
    assert len(store.read_all(Template(("rec", None)))) == 39_999
