"""A secondary keeps in memory what it commits to disk (issue 19: promotion is a role change, with nothing to load).

Differential: a primary store runs random work; after each turn its rows go, as in replication, to a replica's disk
and to the replica's memory. At the end the memory must equal a store loaded from that disk: the same tuples in the
same order, the same leases and owners, the same sessions; and once armed (promoted) it expires what the primary
would have expired."""

from __future__ import annotations

import random

import msgpack
import pytest

from onitu.space import Template
from onitu.space.durable import Durable
from onitu.space.errors import SpaceError
from onitu.space.protocol import as_tuple, unpackb
from onitu.space.store import SESSION, Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snapshot_rows(store: Store) -> list[tuple[int, bytes]]:
    """Every live tuple as (entry id, msgpack bytes), oldest first, as a snapshot ships them."""
    return [(eid, held if type(held) is bytes else msgpack.packb(held)) for eid, held in store.live.items()]


def decode(body: bytes):
    return as_tuple(unpackb(body))


def state(store: Store) -> dict:
    everything = Template([None, None])
    return {"order": store.read_all(everything),
            "leases": {store.entry(e): d for e, d in store.leases.items()},
            "owners": {store.entry(e): s.sid for e, s in store.owner.items()},
            "sessions": {sid: s.ttl for sid, s in store.sessions.items()},
            "tuples": {sid: sorted(store.entry(e) for e in s.tuples) for sid, s in store.sessions.items()}}


def random_turn(rng: random.Random, store: Store, clock: Clock, sids: list[bytes], n: int) -> int:
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        try:
            if op < 0.45:
                lease = rng.choice([None, None, 5.0, 50.0, SESSION])
                store.write(("t", n), lease, rng.choice(sids) if lease == SESSION else None)
                n += 1
            elif op < 0.65:
                store.take(Template(["t", rng.choice([None, rng.randrange(max(n, 1))])]))
            elif op < 0.75 and store.live:
                eid = rng.choice(list(store.live))
                store.renew(eid, rng.choice([None, 3.0, 40.0, SESSION]), rng.choice(sids))
            elif op < 0.85:
                store.batch([("write", ("t", n), None), ("take", Template(["t", None]))])
                n += 1
            elif op < 0.92:
                sid = rng.choice(sids)
                store.end_session(sid) if sid in store.sessions else store.open_session(sid, rng.choice([2.0, 9.0]))
            else:
                clock.now += rng.choice([0.5, 2.0, 6.0])
                store.reap()
        except SpaceError:
            pass
    return n


@pytest.mark.parametrize("packed", [False, True], ids=["objects", "packed"])
@pytest.mark.parametrize("seed", range(12))
def test_the_replica_memory_is_what_its_disk_holds(tmp_path, seed, packed):
    rng = random.Random(seed)
    clock = Clock()
    primary = Store(clock=clock, packed=packed)
    replica = Store(clock=clock, packed=packed)
    disk = Durable(tmp_path / "replica.db")
    sids = [bytes([i]) * 16 for i in range(4)]
    for sid in sids[:2]:
        primary.open_session(sid, 9.0)
    n = 0
    for turn in range(150):
        n = random_turn(rng, primary, clock, sids, n)
        rows = disk.encode(primary.drain())
        disk.commit(rows, [], {}, (primary.next_id, primary.event_id))
        replica.mirror(rows, decode)
        if turn == 75:  # a snapshot then: the replica starts again from the primary's state as it is
            replica.reset()
            replica.mirror([[], [], [], [[s.sid, s.ttl] for s in primary.sessions.values()]], decode)
            replica.mirror([[[e, body, primary.leases.get(e), primary.owner[e].sid if e in primary.owner else None]
                             for e, body in snapshot_rows(primary)], [], [], []], decode)
    assert state(replica) == state(primary)
    loaded = Store(clock=clock, packed=packed)
    disk.load(loaded)
    assert state(replica) == state(loaded)
    # promoted: the leases and sessions run out as they would have on the primary (sessions get a full TTL)
    replica.arm()
    primary_sessions = {sid: s.ttl for sid, s in primary.sessions.items()}
    clock.now += 60.0 + max(primary_sessions.values(), default=0)
    replica.reap()
    assert replica.leases == {} and replica.sessions == {} and replica.owner == {}
    assert all(e not in primary.leases and e not in primary.owner for e in replica.live)
    disk.close()
