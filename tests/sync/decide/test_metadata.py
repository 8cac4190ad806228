"""onitu.sync.decide.metadata: version vector laws (hypothesis), wire round trips, and hostile wire input refused."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onitu.sync.decide.metadata import Causality, FileMeta, VersionVector

SHA = "a" * 64
vectors = st.dictionaries(st.sampled_from("ABCDE"), st.integers(0, 5), max_size=5).map(VersionVector)


@given(vectors, vectors)
def test_merge_is_commutative(a: VersionVector, b: VersionVector) -> None:
    assert a.merge(b) == b.merge(a)


@given(vectors, vectors, vectors)
def test_merge_is_associative(a: VersionVector, b: VersionVector, c: VersionVector) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(vectors)
def test_merge_is_idempotent(a: VersionVector) -> None:
    assert a.merge(a) == a and a.compare(a) is Causality.EQUAL


@given(vectors, vectors)
def test_compare_is_consistent(a: VersionVector, b: VersionVector) -> None:
    mirrored = {Causality.EQUAL: Causality.EQUAL, Causality.DESCENDS: Causality.PRECEDES,
                Causality.PRECEDES: Causality.DESCENDS, Causality.CONCURRENT: Causality.CONCURRENT}
    assert b.compare(a) is mirrored[a.compare(b)]
    assert (a.compare(b) is Causality.EQUAL) == (a == b)
    merged = a.merge(b)
    seen_all = (Causality.EQUAL, Causality.DESCENDS)
    assert merged.compare(a) in seen_all and merged.compare(b) in seen_all


@given(vectors, st.sampled_from("ABCDE"))
def test_bump_descends(a: VersionVector, service: str) -> None:
    assert a.bump(service).compare(a) is Causality.DESCENDS and a.bump(service).get(service) == a.get(service) + 1


def test_concurrent_and_zero_counters() -> None:
    assert VersionVector({"A": 1}).compare(VersionVector({"B": 1})) is Causality.CONCURRENT
    assert VersionVector({"A": 0}) == VersionVector() and VersionVector({"A": 0}).to_wire() == {}
    assert hash(VersionVector({"A": 1, "B": 2})) == hash(VersionVector({"B": 2, "A": 1}))


@given(vectors)
def test_vector_wire_round_trip(a: VersionVector) -> None:
    assert VersionVector.from_wire(msgpack.unpackb(msgpack.packb(a.to_wire()))) == a


METAS = [
    FileMeta("docs/é.txt", "file", 12, SHA, VersionVector({"A": 2, "B": 1}), False, 1_700_000_000_000_000_000),
    FileMeta("docs", "dir", version=VersionVector({"A": 1})),
    FileMeta("old.txt", version=VersionVector({"B": 3}), tombstone=True),
]


@pytest.mark.parametrize("meta", METAS, ids=lambda m: m.path)
def test_meta_wire_round_trip(meta: FileMeta) -> None:
    wire = meta.to_wire()
    assert FileMeta.from_wire(msgpack.unpackb(msgpack.packb(wire))) == meta


def wire(**change: object) -> dict:
    return {**METAS[0].to_wire(), **change}


HOSTILE = {
    "not a mapping": ([1, 2], "must be a mapping"),
    "missing key": ({k: v for k, v in wire().items() if k != "sha256"}, "missing ['sha256']"),
    "unknown key": (wire(owner="root"), "unknown ['owner']"),
    "path escapes": (wire(path="../etc/passwd"), "'..'"),
    "absolute path": (wire(path="/etc/passwd"), "absolute path"),
    "NUL in path": (wire(path="a\0b"), "forbidden character"),
    "path not text": (wire(path=b"a"), "path must be text"),
    "bad kind": (wire(kind="symlink"), "kind must be"),
    "negative size": (wire(size=-1), "size must be"),
    "bool size": (wire(size=True), "size must be"),
    "short hash": (wire(sha256="abc"), "sha256"),
    "uppercase hash": (wire(sha256="A" * 64), "sha256"),
    "file without hash": (wire(sha256=None), "sha256"),
    "tombstone with hash": (wire(tombstone=True), "no sha256"),
    "tombstone not bool": (wire(tombstone=1), "tombstone a boolean"),
    "vector not mapping": (wire(version=[1]), "version vector must be a mapping"),
    "negative counter": (wire(version={"A": -1}), "non-negative integer"),
    "float counter": (wire(version={"A": 1.5}), "non-negative integer"),
    "huge counter": (wire(version={"A": 1 << 64}), "non-negative integer"),
    "empty service": (wire(version={"": 1}), "non-empty text"),
    "mtime not int": (wire(mtime_ns="yesterday"), "mtime_ns"),
}


@pytest.mark.parametrize(("value", "problem"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_wire_input_is_refused(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        FileMeta.from_wire(value)
    assert problem in str(info.value)
