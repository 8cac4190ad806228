"""The ledger (agreed and held versions, one tuple per path in a real in-process space), the mirror of the
replicas' entries beside it, and the sorted path index."""

from __future__ import annotations

import hashlib
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onitu.space import TupleSpace
from onitu.space.protocol import unpack_tuple
from onitu.sync import tuples
from onitu.sync.decide.metadata import FileMeta, VersionVector
from onitu.sync.decide.plan import Observed, is_clean
from onitu.sync.state import ledger as ledger_module
from onitu.sync.state.ledger import Ledger
from onitu.sync.state.replicas import Mirror
from onitu.sync.state.tree import Tree


def meta(path: str, text: str, *counts: tuple[str, int]) -> FileMeta:
    return FileMeta(path, "file", len(text), hashlib.sha256(text.encode()).hexdigest(), VersionVector(dict(counts)))


def obs(text: str) -> Observed:
    return Observed("file", hashlib.sha256(text.encode()).hexdigest(), len(text), 7, "fp")


@pytest.fixture
def space():
    ts = TupleSpace()
    yield ts
    ts.close()


def reloaded(space: TupleSpace) -> Ledger:
    ledger = Ledger()
    ledger.load(space)
    return ledger


def state(ledger: Ledger, services=("a", "b", "c")) -> dict:
    return {"agreed": dict(ledger.agreed["f"]),
            "held": {s: dict(ledger.held[s, "f"].items()) for s in services},
            "counts": {s: ledger.holding(s, "f") for s in services}}


def test_one_tuple_per_path_and_a_reload_gives_the_same_state(space):
    ledger = Ledger()
    v1, v2 = meta("x", "one", ("a", 1)), meta("x", "two", ("a", 2))
    ledger.agree("f", v1)
    for s in ("a", "b", "c"):
        ledger.hold(s, "f", "x", v1)
    ledger.commit(space)
    assert len(space.read_all((tuples.META, None, None))) == 1
    ledger.agree("f", v2)  # a changed it: b and c still hold v1 until their copies are done
    ledger.hold("a", "f", "x", v2)
    ledger.commit(space)
    assert len(space.read_all((tuples.META, None, None))) == 1
    assert ledger.held["b", "f"]["x"] == v1 and ledger.held["a", "f"]["x"] == v2
    assert state(reloaded(space)) == state(ledger)
    ledger.hold("b", "f", "x", None)  # b deleted it
    ledger.commit(space)
    assert "x" not in ledger.held["b", "f"] and ledger.holding("b", "f") == 0
    assert state(reloaded(space)) == state(ledger)


class Watched:
    """A space whose answers to read_all are kept, to see what the reader left of them."""

    def __init__(self, space: TupleSpace) -> None:
        self.space, self.answers = space, []

    def read_all(self, template, limit=None, packed=False):
        self.answers.append(self.space.read_all(template, limit, packed))
        return self.answers[-1]


def test_a_load_lets_each_record_go_once_installed(space):
    # a million decoded records freed at once at the end of the load held the GIL for seconds: the referee
    # restarting a million-file hub was killed as hung there at every start
    ledger = Ledger()
    for n in range(5):
        ledger.agree("f", meta(f"p{n}", str(n), ("a", 1)))
        ledger.hold("a", "f", f"p{n}", meta(f"p{n}", str(n), ("a", 1)))
    ledger.commit(space)
    watched = Watched(space)
    loaded = Ledger()
    loaded.load(watched)
    assert watched.answers == [[]]
    assert state(loaded) == state(ledger)


def test_a_load_holds_the_records_packed_until_each_is_installed(space, monkeypatch):
    """Decoded at once, a million records took gigabytes at each start of the referee: they come as their bytes,
    and each is decoded as it is installed."""
    ledger = Ledger()
    ledger.agree("f", meta("p", "x", ("a", 1)))
    ledger.commit(space)
    decoded = []
    monkeypatch.setattr(ledger_module, "unpack_tuple", lambda body: decoded.append(type(body)) or unpack_tuple(body))
    loaded = Ledger()
    loaded.load(Watched(space))
    assert decoded == [bytes]
    assert state(loaded) == state(ledger)


def test_changes_show_in_latest_before_the_commit_and_in_memory_only_after(space):
    ledger = Ledger()
    v1 = meta("x", "one", ("a", 1))
    ledger.agree("f", v1)
    assert ledger.latest("f", "x") == v1 and "x" not in ledger.agreed["f"]
    ledger.commit(space)
    assert ledger.agreed["f"]["x"] == v1


def test_corrupt_records_are_skipped_and_named(space, caplog):
    good = meta("ok", "fine", ("a", 1))
    space.write((tuples.META, "f/ok", {"meta": good.to_wire(), "holders": ["a"], "other": {}}))
    space.write((tuples.META, "f/bad", {"meta": "not a mapping", "holders": [], "other": {}}))
    space.write((tuples.META, "f/elsewhere", {"meta": good.to_wire(), "holders": [], "other": {}}))
    space.write((tuples.META, "f/odd", ["a", "list"]))
    space.write((tuples.META, "f/short", [["file", 4], ["a"], {}]))
    space.write((tuples.META, "f/hex", [["file", 4, good.sha256, good.version.to_wire(), False, 0], ["a"], {}]))
    space.write((tuples.META, "no-folder", {"meta": good.to_wire(), "holders": [], "other": {}}))
    space.write((tuples.META, "f/../up", {"meta": good.to_wire(), "holders": [], "other": {}}))
    ledger = reloaded(space)
    assert list(ledger.agreed["f"]) == ["ok"] and ledger.holding("a", "f") == 1
    named = {word.rstrip(":") for r in caplog.records for word in r.getMessage().split()}
    assert {"'f/bad'", "'f/elsewhere'", "'f/odd'", "'f/short'", "'f/hex'", "'no-folder'", "'f/../up'"} <= named


def test_records_of_the_earlier_form_load_and_a_change_rewrites_them_compact(space):
    """A space written by an older Onitu holds records as dicts of dicts: they load as they were, and the next
    change of a path stores its record in the compact form."""
    v1, v2 = meta("x", "one", ("a", 1)), meta("y", "two", ("b", 1))
    space.write((tuples.META, "f/x", {"meta": v1.to_wire(), "holders": ["a", "b"], "other": {}}))
    space.write((tuples.META, "f/y", {"meta": v2.to_wire(), "holders": ["b"], "other": {"a": v1.to_wire() | {
        "path": "y"}}}))
    ledger = reloaded(space)
    assert ledger.agreed["f"]["x"] == v1 and ledger.services(ledger.agreed["f"].holders("x")) == ["a", "b"]
    assert ledger.holds("a", "f", "y") == FileMeta.from_wire(v1.to_wire() | {"path": "y"})
    ledger.agree("f", meta("x", "three", ("a", 2)))
    ledger.hold("a", "f", "x", meta("x", "three", ("a", 2)))
    ledger.commit(space)
    (_, _, stored), = space.read_all((tuples.META, "f/x", None))
    assert isinstance(stored, list) and stored[1] == ["a"] and stored[2] == {"b": v1.to_row()}
    assert state(reloaded(space)) == state(ledger)


@given(st.lists(st.tuples(st.sampled_from(["agree", "hold", "drop"]), st.sampled_from(["a", "b", "c"]),
                          st.sampled_from(["x", "y", "d/z"]), st.integers(0, 3)), max_size=25))
def test_random_changes_survive_a_reload(steps):
    space = TupleSpace()
    try:
        ledger = Ledger()
        for n, (op, service, path, version) in enumerate(steps):
            version_meta = meta(path, f"v{version}", (service, version + 1))
            if op == "agree":
                ledger.agree("f", version_meta)
            elif op == "hold":
                ledger.hold(service, "f", path, version_meta)
            else:
                ledger.hold(service, "f", path, None)
            if n % 3 == 2:
                ledger.commit(space)
        ledger.commit(space)
        again = reloaded(space)
        assert state(again) == state(ledger)
        for s in ("a", "b", "c"):
            assert ledger.holding(s, "f") == len(list(ledger.held[s, "f"]))
    finally:
        space.close()


def test_the_mirror_keeps_entries_with_the_agreed_content_as_one_bit(space):
    ledger = Ledger()
    mirror = Mirror(ledger)
    ledger.on_agreed = mirror.rebase
    v1 = meta("x", "one", ("a", 1))
    assert mirror.set("a", "f", "x", obs("one"))  # nothing agreed yet: kept apart
    assert mirror.other["a", "f"]["x"].content == obs("one").content
    ledger.agree("f", v1)
    ledger.commit(space)  # now agreed: a's entry is the agreed content
    assert ledger.agreed["f"].matching("x") == ledger.bit("a") and "x" not in mirror.other["a", "f"]
    assert not mirror.set("b", "f", "x", None) and mirror.set("b", "f", "x", obs("one"))
    assert mirror.get("b", "f", "x").content == obs("one").content
    ledger.agree("f", meta("x", "two", ("a", 2)))  # agreed moves on: a and b have the old content now
    ledger.commit(space)
    assert mirror.get("a", "f", "x").content == obs("one").content and ledger.agreed["f"].matching("x") == 0
    assert mirror.set("a", "f", "x", obs("two")) and ledger.agreed["f"].matching("x") == ledger.bit("a")
    assert sorted(mirror.paths("b", "f")) == ["x"]
    assert mirror.set("b", "f", "x", None) and mirror.get("b", "f", "x") is None
    ledger.agree("f", FileMeta("x", "file", version=VersionVector({"a": 3}), tombstone=True))  # deleted
    ledger.commit(space)
    assert ledger.agreed["f"].matching("x") == 0 and mirror.get("a", "f", "x").content == obs("two").content


def test_the_mirror_holds_entries_apart_packed_and_gives_back_their_room(space):
    """A first sync holds every file of the source apart until its copies are agreed: as rows (about 80 bytes, not
    330 as objects), read back as they were set, whatever they hold; and the room they took is given back once
    they are agreed."""
    ledger = Ledger()
    mirror = Mirror(ledger)
    ledger.on_agreed = mirror.rebase
    odd = {"upper": Observed("file", "AB" * 32, 1, 2), "huge": Observed("file", "ab" * 32, 1 << 70, -5),
           "dir": Observed("dir", None, 0, 9), "none": Observed("file", None, 3, 4)}
    for path, entry in odd.items():
        mirror.set("a", "f", path, entry)
    for i in range(5000):
        mirror.set("a", "f", f"d/{i}", obs(str(i)))
    table = mirror.other["a", "f"]
    assert all(type(table._rows[f"d/{i}"]) is bytes for i in range(5000))
    assert {path: mirror.get("a", "f", path) for path in odd} == odd
    assert mirror.get("a", "f", "d/7") == Observed("file", obs("7").sha256, 1, 7)  # no fingerprint kept
    room = sys.getsizeof(table._rows)
    for i in range(5000):
        ledger.agree("f", meta(f"d/{i}", str(i), ("a", 1)))
    ledger.commit(space)
    mirror.compact()
    assert sorted(mirror.other["a", "f"]) == sorted(odd) and sys.getsizeof(mirror.other["a", "f"]._rows) < room / 8


def test_tree_finds_what_is_below_a_directory_and_nothing_beside_it():
    tree = Tree(lambda folder, path: True)
    paths = ["a", "a/x", "a/y/z", "a b", "a-b", "a0", "ab", "b/a"]
    for p in paths:
        tree.add("f", p)
    alive = set(paths)
    assert tree.below("f", "a", alive.__contains__) == ["a/x", "a/y/z"]
    tree.add("f", "a/new")
    alive.add("a/new")
    alive.discard("a/x")
    assert tree.below("f", "a", alive.__contains__) == ["a/new", "a/y/z"]
    assert tree.below("f", "b", alive.__contains__) == ["b/a"] and tree.below("f", "ab", alive.__contains__) == []


def test_orders_are_sent_in_the_order_given_whatever_the_paths(space):
    """A plug carries out orders as it reads them: deleting a directory's content, deepest first, must come before
    the directory, although the records of those paths were changed in another order."""
    ledger = Ledger()
    paths = ["top", "top/sub", "top/sub/file.txt"]
    for path in paths:  # records changed in path order...
        ledger.agree("f", meta(path, path, ("a", 1)))
    for n, path in enumerate(reversed(paths)):  # ...orders given deepest first
        ledger.also([("write", ("order", n, path), None)], [("f", path)])
    ledger.commit(space)
    assert [t[2] for t in space.read_all(("order", None, None))] == list(reversed(paths))


def test_the_same_bytes_under_another_version_are_the_agreed_version_held(space):
    """A copy reported done under the version its order carried, after the hub agreed a newer version of the same
    bytes (or a replica that reached the same bytes on its own): that service holds the agreed version. Recorded
    apart, it was missing from the holders (the files route) and its next change counted as a conflict."""
    ledger = Ledger()
    ledger.agree("f", meta("x", "one", ("a", 1)))
    ledger.hold("a", "f", "x", meta("x", "one", ("a", 1)))
    ledger.commit(space)
    ledger.agree("f", meta("x", "one", ("a", 1), ("b", 1)))  # a newer version, the same bytes: a still holds it
    ledger.hold("b", "f", "x", meta("x", "one", ("a", 1)))  # b's copy, done under the order's older version
    ledger.hold("c", "f", "x", meta("x", "two", ("c", 1)))  # other bytes: apart
    ledger.commit(space)
    for ledger_now in (ledger, reloaded(space)):
        assert ledger_now.services(ledger_now.agreed["f"].holders("x")) == ["a", "b"]
        assert ledger_now.holds("b", "f", "x") == ledger_now.agreed["f"]["x"]
        assert ledger_now.holds("c", "f", "x") == meta("x", "two", ("c", 1))
    assert is_clean(meta("x", "one", ("a", 1)), meta("x", "one", ("a", 2)))  # the same bytes: no conflict
    assert not is_clean(meta("x", "one", ("a", 1)), meta("x", "two", ("a", 2)))
