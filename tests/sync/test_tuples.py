"""Everything read from the space is checked: hostile observations, orders and record keys are refused by name."""

from __future__ import annotations

import pytest

from onitu.sync import tuples
from onitu.sync.decide.plan import Copy, Observed

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
