"""Everything read from the space is checked: hostile observations, orders and record keys are refused by name."""

from __future__ import annotations

import dataclasses

import pytest

from onitu.space.protocol import packb, unpackb
from onitu.sync import tuples
from onitu.sync.decide.metadata import FileMeta, VersionVector
from onitu.sync.decide.plan import Copy, Delete, KeepConflict, Mkdir, Move, Observed

SHA = "ab" * 32


@pytest.mark.parametrize(("value", "problem"), [
    ("file", "an observation must be"),
    (["file", SHA, 3, 1, "fingerprint"], "an observation must be"),
    (["link", SHA, 3, 1], "kind"),
    (["file", SHA, 3, "yesterday"], "mtime_ns"),
    (["file", "nothex", 3, 1], "sha256"),
    (["file", SHA, -1, 1], "size"),
    (["file", SHA.upper(), 3, 1], "sha256"),
    (["dir", SHA, 0, 1], "directory"),
])
def test_bad_observations_are_refused(value, problem):
    with pytest.raises(ValueError, match=problem):
        tuples.obs_from_wire(value)


def test_observations_and_orders_round_trip():
    obs = Observed("file", SHA, 3, 7)
    assert tuples.obs_from_wire(tuples.obs_to_wire(obs)) == obs
    copy = Copy("d/f.txt", "b", ("a", "c"), SHA, 3, None)
    assert tuples.action_from_wire(tuples.action_to_wire(copy)) == copy


_ACTIONS = [Copy("d/f.txt", "b", ("a", "c"), SHA, 3, None), Copy("d/é.txt", "b", ("a",), SHA, 0, "x", "d/é (1).txt"),
            Mkdir("d", "b"), Delete("d/g", "b", "sha:1"), Move("d/g", "d/h", "b", "sha:1"),
            KeepConflict("d/f.txt", "b", "d/f (conflict).txt", "sha:2")]


@pytest.mark.parametrize("action", _ACTIONS, ids=lambda a: type(a).__name__)
def test_an_action_as_a_row_reads_back_the_same_and_is_smaller(action):
    row, wire = tuples.action_to_wire(action, rows=True), tuples.action_to_wire(action)
    assert tuples.action_from_wire(row) == tuples.action_from_wire(wire) == action
    assert len(packb(row)) < len(packb(wire)) * (0.5 if isinstance(action, Copy) else 0.8)


def test_an_order_reads_back_in_either_form_and_an_agreed_version_must_be_its_actions():
    meta = FileMeta("d/f.txt", "file", 3, SHA, VersionVector.of({"a": 2}), False, 7)
    actions, metas = [_ACTIONS[0], _ACTIONS[3]], [meta, None]
    for rows in (False, True):
        body = tuples.order_body("docs", actions, metas, rows)
        assert tuples.order_from_wire(unpackb(packb(body))) == (actions, metas)
    other = dataclasses.replace(meta, path="d/other.txt")  # a dict names its path (a row is its action's)
    with pytest.raises(ValueError, match=r"d/other\.txt"):
        tuples.order_from_wire(tuples.order_body("docs", [_ACTIONS[0]], [other], False))


@pytest.mark.parametrize(("row", "problem"), [
    (["copy", "f", "b", ["a"], SHA, 3, None, None], "32 bytes"),  # the hash in hex where a row holds raw bytes
    (["copy", "f", "b", ["a"], bytes(31), 3, None, None], "32 bytes"),
    (["mkdir", "f"], "a row"), (["rmrf", "f", "b"], "a row"), ([], "a row"), ([3, "f", "b"], "a row"),
    (["mkdir", "../f", "b"], "path"), (["delete", "f", "b", 3], "replaces"),
])
def test_bad_action_rows_are_refused(row, problem):
    with pytest.raises(ValueError, match=problem):
        tuples.action_from_wire(row)


@pytest.mark.parametrize("entries", [
    [["../up", None]], [["/abs", None]], [["a\x00b", None]], [[".onitu-root", None]], [["ok"]], "nope", [[3, None]],
])
def test_entries_with_unsafe_paths_or_shapes_are_refused(entries):
    with pytest.raises(ValueError):
        tuples.entries_from_wire(entries)


@pytest.mark.parametrize("key", ["nofolder", 7, None, "docs/../x", "docs/", "docs//x"])
def test_record_keys_must_name_a_folder_and_a_safe_path(key):
    with pytest.raises(ValueError):
        tuples.split_meta_key(key)


def test_record_keys_split_at_the_first_slash():
    assert tuples.split_meta_key(tuples.meta_key("docs", "a/b/c.txt")) == ("docs", "a/b/c.txt")
