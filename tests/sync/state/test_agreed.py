"""The packed table of agreed versions: what goes in comes out equal, whatever it holds."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from onitu import heap
from onitu.sync.decide.metadata import FileMeta, VersionVector
from onitu.sync.state import agreed as agreed_module
from onitu.sync.state.agreed import Agreed

services = st.sampled_from(["a", "b", "c", "d"])
versions = st.dictionaries(services, st.integers(0, (1 << 63) - 1), max_size=4).map(VersionVector.of)
paths = st.sampled_from(["x", "d/x.txt", "d", "é/ü.bin", "a b/c"])


@st.composite
def metas(draw: st.DrawFn) -> FileMeta:
    path, version = draw(paths), draw(versions)
    mtime = draw(st.integers(-(1 << 70), 1 << 70))  # beyond 64 bits too: kept unpacked
    match draw(st.sampled_from(["file", "dir", "tombstone"])):
        case "file":
            size = draw(st.integers(0, 1 << 70))
            return FileMeta(path, "file", size, hashlib.sha256(draw(st.binary())).hexdigest(), version, False, mtime)
        case "dir":
            return FileMeta(path, "dir", version=version, mtime_ns=mtime)
        case _:
            return FileMeta(path, draw(st.sampled_from(["file", "dir"])), version=version, tombstone=True)


@given(st.lists(st.tuples(metas(), st.integers(0, 1 << 70)), max_size=12))
def test_the_table_gives_back_what_it_was_given(given):
    table, expected, holders = Agreed(), {}, {}
    for meta, mask in given:
        table.put(meta, mask)
        expected[meta.path], holders[meta.path] = meta, mask
    assert dict(table) == expected
    assert dict(table.items()) == expected and sorted(table.values(), key=lambda m: m.path) == \
        sorted(expected.values(), key=lambda m: m.path)
    for path in ["x", "d/x.txt", "d", "é/ü.bin", "a b/c"]:
        assert table.get(path) == expected.get(path)
        assert (path in table) == (path in expected)
        assert table.is_live(path) == (path in expected and not expected[path].tombstone)
        assert table.holders(path) == holders.get(path, 0)
    for bit in (1, 2, 1 << 69):
        assert sorted(table.held_by(bit)) == sorted(p for p, mask in holders.items() if mask & bit)
    for path in expected:  # the matching mask is set apart from the holders, and each keeps to itself
        table.set_matching(path, holders[path] >> 1)
        assert table.holders(path) == holders[path] and table.matching(path) == holders[path] >> 1
    assert sorted(table.matched_by(1)) == sorted(p for p in expected if holders[p] >> 1 & 1)
    for path in list(expected)[::2]:
        table.remove(path)
        del expected[path]
    table.remove("never there")
    assert dict(table) == expected and len(table) == len(expected)


def test_a_read_shares_the_tables_string_for_the_path():
    table = Agreed()
    path = "".join(["dir/", "file.txt"])  # a string of its own, not a constant shared by the compiler
    table.put(FileMeta(path, "dir"), 0)
    assert table[path].path is path


def test_versions_beyond_the_numbered_ones_are_kept_unpacked(monkeypatch):
    monkeypatch.setattr(agreed_module, "VERSIONS", len(agreed_module._versions))
    table = Agreed()
    fresh = FileMeta("f", "dir", version=VersionVector.of({"never-seen-before": 12345}))
    table.put(fresh, 5)
    table.set_matching("f", 3)
    assert table["f"] is fresh and table.holders("f") == 5 and table.matching("f") == 3


def test_matching_services_stay_while_the_content_does():
    table, sha = Agreed(), hashlib.sha256(b"x").hexdigest()
    table.put(FileMeta("f", "file", 1, sha, VersionVector.of({"a": 1})), 1)
    table.set_matching("f", 0b11)
    table.put(FileMeta("f", "file", 1, sha, VersionVector.of({"a": 1, "b": 1}), mtime_ns=5), 0b11)
    assert table.matching("f") == 0b11, "a new version of the same content: the same services match it"
    table.put(FileMeta("f", "file", 1, hashlib.sha256(b"y").hexdigest(), VersionVector.of({"a": 2})), 1)
    assert table.matching("f") == 0 and table.holders("f") == 1
    table.put(FileMeta("d", "dir"), 0)
    table.set_matching("d", 1)
    table.put(FileMeta("d", "dir", version=VersionVector.of({"a": 1}), tombstone=True), 0)
    assert table.matching("d") == 0, "nothing matches a deletion"


def test_memory_goes_back_to_the_system_on_linux():
    assert heap.give_back() is True
