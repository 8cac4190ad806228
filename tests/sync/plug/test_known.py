"""A plug's table of what it reported (:class:`onitu.sync.plug.known.Known`): held packed, read back exactly as
written, whatever the entry."""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st

from onitu.sync.decide.plan import Observed
from onitu.sync.plug.known import Known

HASH = "0123456789abcdef" * 4

observed = st.builds(
    Observed,
    kind=st.sampled_from(["file", "dir"]),
    sha256=st.one_of(st.none(), st.just(HASH), st.just(HASH.upper()), st.text(max_size=70)),
    size=st.one_of(st.integers(0, 1 << 70), st.just(4096)),
    mtime_ns=st.integers(-(1 << 64), 1 << 64),
    fingerprint=st.text(max_size=40),
)


@given(st.dictionaries(st.text(min_size=1, max_size=12), observed, max_size=20))
def test_every_entry_reads_back_as_it_was_set(entries):
    table = Known(entries)
    assert dict(table.items()) == entries and len(table) == len(entries)
    for path, obs in entries.items():
        table[path] = obs
        assert table[path] == obs and table.get(path) == obs and path in table
    assert table.get("\0absent") is None and "\0absent" not in table


def test_a_file_entry_is_held_in_about_a_third_of_its_objects_size():
    obs = Observed("file", HASH, 4096, 1_764_000_000_123_456_789, f"4096-{1_764_000_000_123_456_789}-12345678")
    table = Known({"d/f.txt": obs})
    row = table._rows["d/f.txt"]
    as_objects = sum(sys.getsizeof(v) for v in (obs, obs.sha256, obs.size, obs.mtime_ns, obs.fingerprint))
    assert type(row) is bytes and sys.getsizeof(row) * 2.5 < as_objects, (sys.getsizeof(row), as_objects)


def test_what_is_below_a_path_and_deletions():
    table = Known({"d": Observed("dir"), "d/a": Observed("file", HASH, 1), "d/e/b": Observed("file", HASH, 2),
                   "dx": Observed("file", HASH, 3)})
    assert table.at_and_below("d") == ["d", "d/a", "d/e/b"] and table.at_and_below("d/a") == ["d/a"]
    del table["d/a"]
    assert table.at_and_below("d") == ["d", "d/e/b"] and table.keys() - {"d"} == {"d/e/b", "dx"}
