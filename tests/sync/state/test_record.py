"""A path's record in the space (:mod:`onitu.sync.state.record`): its compact form, the earlier form still read,
and hostile records refused with a reason."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from onitu.sync.decide.metadata import FileMeta, VersionVector
from onitu.sync.state import record

PATH = "photos/2024/été/IMG_0001.jpg"


def meta(path: str = PATH, text: str = "pixels", **kw) -> FileMeta:
    return FileMeta(path, "file", len(text), hashlib.sha256(text.encode()).hexdigest(),
                    VersionVector({"source": 3, "r1": 1}), mtime_ns=1_733_000_000_123_456_789, **kw)


def through_msgpack(value):
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


def test_a_record_comes_back_as_it_was_written_through_msgpack():
    agreed = meta()
    other = {"r2": meta(text="older"), "nas": FileMeta(PATH, tombstone=True, version=VersionVector({"nas": 9}))}
    stored = through_msgpack(record.encode(agreed, ["source", "r1"], other))
    assert record.decode(PATH, stored) == (agreed, ["source", "r1"], other)
    folder = FileMeta("photos/2024", "dir", version=VersionVector({"source": 1}))
    assert record.decode("photos/2024", through_msgpack(record.encode(folder, [], {}))) == (folder, [], {})


def test_the_compact_form_is_less_than_half_the_earlier_one():
    agreed = meta()
    legacy = {"meta": agreed.to_wire(), "holders": ["source", "r1"], "other": {}}
    compact = record.encode(agreed, ["source", "r1"], {})
    sizes = len(msgpack.packb(compact, use_bin_type=True)), len(msgpack.packb(legacy, use_bin_type=True))
    assert sizes[0] * 2 < sizes[1], sizes


def test_a_record_of_the_earlier_form_is_read():
    agreed, older = meta(), meta(text="older")
    legacy = {"meta": agreed.to_wire(), "holders": ["source"], "other": {"r1": older.to_wire()}}
    assert record.decode(PATH, through_msgpack(legacy)) == (agreed, ["source"], {"r1": older})


@pytest.mark.parametrize("stored, reason", [
    ("a string", "a list of 3 values"),
    ([[], [], {}, 4], "a list of 3 values"),
    ([["file", 1], [], {}], "a list of 6 values"),
    ([["file", 6, "ab" * 32, {"s": 1}, False, 0], [], {}], "32 bytes"),  # hex where the raw bytes belong
    ([["file", 6, b"\x00" * 31, {"s": 1}, False, 0], [], {}], "32 bytes"),
    ([["link", 0, None, {"s": 1}, False, 0], [], {}], "kind"),
    ([["file", -1, b"\x00" * 32, {"s": 1}, False, 0], [], {}], "size"),
    ([["file", 6, b"\x00" * 32, {"s": -2}, False, 0], [], {}], "counter"),
    ([["file", 6, b"\x00" * 32, {"s": 1}, False, 0], "source", {}], "holders"),
    ([["file", 6, b"\x00" * 32, {"s": 1}, False, 0], [""], {}], "holders"),
    ([["file", 6, b"\x00" * 32, {"s": 1}, False, 0], [], {"r1": "x"}], "a list of 6 values"),
    ([["file", 6, b"\x00" * 32, {"s": 1}, False, 0], [], []], "other"),
    ({"meta": {}, "holders": []}, "exactly the keys"),
])
def test_a_hostile_record_is_refused_with_its_reason(stored, reason):
    with pytest.raises(ValueError, match=reason):
        record.decode(PATH, stored)


def test_a_record_whose_versions_name_another_path_is_refused():
    legacy = {"meta": meta("elsewhere.txt").to_wire(), "holders": [], "other": {}}
    with pytest.raises(ValueError, match="another path"):
        record.decode(PATH, legacy)
    with pytest.raises(ValueError, match="path"):
        record.decode("../up", record.encode(meta(), [], {}))
