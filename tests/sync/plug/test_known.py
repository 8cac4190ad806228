"""A plug's table of what it reported (:class:`onitu.sync.plug.known.Known`): held packed, read back exactly as
written, whatever the entry."""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st

from onitu.sync.decide.plan import Observed
from onitu.sync.plug.known import Known
from onitu.sync.state.observations import pack_hashed

HASH = "0123456789abcdef" * 4

observed = st.builds(
    Observed,
    kind=st.sampled_from(["file", "dir"]),
    sha256=st.one_of(st.none(), st.just(HASH), st.just(HASH.upper()), st.text(max_size=70)),
    size=st.one_of(st.integers(0, 1 << 70), st.just(4096)),
    mtime_ns=st.integers(-(1 << 64), 1 << 64),
    fingerprint=st.text(max_size=40),
)




@st.composite
def local_disk(draw) -> Observed:
    """An entry as the local driver fingerprints it, ``size-mtime-inode``: held as the inode's 8 bytes, unless the
    inode part is something else (leading zeros, past 64 bits, not ASCII digits), then as the text it is."""
    obs = draw(observed)
    inode = draw(st.one_of(st.integers(0, (1 << 64) - 1).map(str), st.just("007"), st.just(str(1 << 64)),
                           st.just("١٢"), st.just("")))
    return Observed(obs.kind, obs.sha256, obs.size, obs.mtime_ns, f"{obs.size}-{obs.mtime_ns}-{inode}")


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.one_of(observed, local_disk()), max_size=20))
def test_every_entry_reads_back_as_it_was_set(entries):
    table = Known(entries)
    assert dict(table.items()) == entries and len(table) == len(entries)
    for path, obs in entries.items():
        table[path] = obs
        assert table[path] == obs and table.get(path) == obs and path in table
    assert table.get("\0absent") is None and "\0absent" not in table
    for path, obs in entries.items():  # what the plug's hash cache compares its own entries with
        packed = type(table._rows[path]) is bytes and obs.sha256 is not None
        assert table.hashed(path) == (pack_hashed(obs.sha256, obs.fingerprint) if packed else None)
    assert dict(table.hashed_rows()) == {path: table.hashed(path) for path in entries if table.hashed(path)}


def test_a_file_entry_is_held_in_under_a_third_of_its_objects_size():
    obs = Observed("file", HASH, 4096, 1_764_000_000_123_456_789, f"4096-{1_764_000_000_123_456_789}-12345678")
    table = Known({"d/f.txt": obs})
    row = table._rows["d/f.txt"]
    as_objects = sum(sys.getsizeof(v) for v in (obs, obs.sha256, obs.size, obs.mtime_ns, obs.fingerprint))
    assert type(row) is bytes and sys.getsizeof(row) * 3.5 < as_objects, (sys.getsizeof(row), as_objects)
    assert table.hashed("d/f.txt") == pack_hashed(HASH, obs.fingerprint)  # as the plug's hash cache holds it


def test_what_is_below_a_path_and_deletions():
    table = Known({"d": Observed("dir"), "d/a": Observed("file", HASH, 1), "d/e/b": Observed("file", HASH, 2),
                   "dx": Observed("file", HASH, 3)})
    assert table.at_and_below("d") == ["d", "d/a", "d/e/b"] and table.at_and_below("d/a") == ["d/a"]
    del table["d/a"]
    assert table.at_and_below("d") == ["d", "d/e/b"] and table.keys() - {"d"} == {"d/e/b", "dx"}
