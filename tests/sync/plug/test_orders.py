"""A plug's order loop on an in-process space: each order carried out once, and its id forgotten once taken."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from typing import Any

from onitu.sync import tuples
from onitu.sync.decide.plan import Copy, Mkdir
from onitu.sync.drivers.contract import DriverError
from onitu.sync.plug.orders import Batch, Running, Started
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


class EndingStreams:
    """The space, whose first subscription ends after 0.3 s (as the server ends those of a session it took for
    dead)."""

    def __init__(self, space: Any) -> None:
        self.space, self.leases = space, [0.3]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.space, name)

    def notify(self, events: Any, template: Any, lease: Any = None, since: Any = None) -> Any:
        return self.space.notify(events, template, self.leases.pop() if self.leases else lease, since)


def test_an_order_stream_the_space_ends_is_followed_again(pair):
    a: Plug = pair["a"]
    space = a.space
    a.taker.space = EndingStreams(space)
    loop = threading.Thread(target=a.taker.run, daemon=True)
    loop.start()
    try:
        time.sleep(1.0)  # the stream has ended
        for oid in range(1, 11):
            space.write(order(oid))
        wait_for(lambda: len(done(space)) >= 10, "the orders written after the stream ended were not carried out")
        assert loop.is_alive()
    finally:
        a.stop()
        loop.join(5)


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


def test_small_copies_side_by_side_go_in_one_batch_and_overlapping_ones_do_not():
    def copy(path: str) -> Copy:
        return Copy(path, "a", ("b",), "0" * 64, 10, None)

    batch = Batch(None)  # type: ignore[arg-type]
    for n, path in enumerate(["d/x/f1", "d/x/f2", "d/f3", "e/f4"]):  # a directory's files all go together
        assert batch.takes(copy(path)), path
        batch.add(n, copy(path))
    assert not batch.takes(copy("d/X/F1")), "the same file (on a replica that ignores case)"
    assert not batch.takes(copy("d/x")), "a file where a copy of the batch needs a directory"
    assert not batch.takes(copy("e/f4/g")), "a file below a file of the batch"
    batch.clear()
    assert batch.takes(copy("d/x")), "a cleared batch takes anything"


def small_copies(pair: dict[str, Plug], tmp_path: Any) -> tuple[list[Copy], dict[str, bytes], list[list[Any]]]:
    """Six small files on b, and one b reported and deleted since, copied to a in one order: the copies, the files'
    contents, and the requests b's chunk server answered meanwhile."""
    a, b = pair["a"], pair["b"]
    contents = {f"s{i}.txt": f"small {i}\n".encode() * (i + 1) for i in range(6)}
    for name, data in contents.items():
        (tmp_path / "b" / name).write_bytes(data)
    b.reporter.changed("docs", list(contents))
    copies = [Copy(name, "a", ("b",), hashlib.sha256(data).hexdigest(), len(data), None)
              for name, data in contents.items()]
    copies.insert(3, Copy("gone.txt", "a", ("b",), "0" * 64, 10, None))  # reported by b, deleted since
    tup = (tuples.ORDER, "a", 7, {"folder": "docs", "actions": [tuples.action_to_wire(c) for c in copies],
                                  "metas": [None] * len(copies)})
    requests: list[list[Any]] = []
    serve = b.server.handle
    b.server.handle = lambda peer, args: (requests.append(args), serve(peer, args))[1]
    a.space.write(tup)
    a.taker.start(tup, Running())
    a.taker.pool.shutdown(wait=True)
    a.outbox.flush()
    (result,) = a.space.read_all((tuples.DONE, "a", None, None, None))
    outcomes = result[4]["results"]
    assert [r["ok"] for r in outcomes] == [True, True, True, False, True, True, True]
    assert "gone.txt" in outcomes[3]["error"]
    assert {name: (tmp_path / "a" / name).read_bytes() for name in contents} == contents
    assert not (tmp_path / "a" / "gone.txt").exists()
    assert a.reporter.known["docs"]["s5.txt"].sha256 == copies[6].sha256
    return copies, contents, requests


def test_small_copies_go_together_and_one_the_source_cannot_read_fails_alone(pair, tmp_path, monkeypatch):
    """Through the source's chunk server (a source whose root cannot be read here)."""
    monkeypatch.setattr(pair["a"].taker.direct, "reader", lambda source, folder: None)
    copies, _, requests = small_copies(pair, tmp_path)
    assert requests[0] == [[c.path for c in copies]], "the small files were not asked for in one request"
    assert {r[0] for r in requests[1:]} == {"gone.txt"}, "only the one the batch could not bring goes alone"


def test_a_local_source_is_read_from_its_root_not_through_its_plug(pair, tmp_path):
    """A local service of the same hub: its files are read here, its plug is asked nothing (only the file it cannot
    read either is then asked of it, alone, and fails)."""
    _, _, requests = small_copies(pair, tmp_path)
    assert requests == [["gone.txt", 0, 1 << 20]], requests
    b = {"service": "b", "root": str(tmp_path / "b"), "folders": {"docs": ""}}
    assert pair["a"].taker.direct.reader(b, "docs") is not None
    assert pair["a"].taker.direct.reader(b, "music") is None, "a folder b does not replicate: its plug's to refuse"
    assert pair["a"].taker.direct.reader({**b, "root": "/elsewhere"}, "docs") is None, "not the root b serves"


def test_a_file_the_root_does_not_give_comes_through_the_plug(pair, tmp_path, monkeypatch):
    """A failure to read a source's root directly (a root this process may not read, say) is no failure of the
    copy: the file is asked of the source's plug."""
    a, b = pair["a"], pair["b"]
    data = os.urandom(3 << 20)
    (tmp_path / "b" / "big.bin").write_bytes(data)
    b.reporter.changed("docs", ["big.bin"])
    reader = a.taker.direct.reader({"service": "b", "root": str(tmp_path / "b"), "folders": {"docs": ""}}, "docs")
    assert reader is not None, "b's root should be readable here"

    def refused(path: str, offset: int = 0, size: int = 0) -> Any:
        raise reader.error(DriverError, path, "permission denied")
        yield b""
    monkeypatch.setattr(reader, "chunks", refused)
    requests: list[list[Any]] = []
    serve = b.server.handle
    b.server.handle = lambda peer, args: (requests.append(args), serve(peer, args))[1]
    copy = Copy("big.bin", "a", ("b",), hashlib.sha256(data).hexdigest(), len(data), None)
    tup = (tuples.ORDER, "a", 8, {"folder": "docs", "actions": [tuples.action_to_wire(copy)], "metas": [None]})
    a.space.write(tup)
    a.taker.start(tup, Running())
    a.taker.pool.shutdown(wait=True)
    a.outbox.flush()
    (result,) = a.space.read_all((tuples.DONE, "a", None, None, None))
    assert result[4]["results"][0]["ok"], result
    assert (tmp_path / "a" / "big.bin").read_bytes() == data
    assert [r[1] for r in requests] == [0, 1 << 20, 2 << 20], "asked of b's plug, chunk by chunk"
