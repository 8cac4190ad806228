"""Renames are not deletions: however many files a replica renames, its next few deletions are not held for approval.

The referee counts each replica's recent deletions against the deletion threshold (so a mass deletion reported in
pieces is still caught); a renamed file left its old path but deleted nothing, and must not count.
"""

from __future__ import annotations

import os

import pytest

from tests.sync.hub import running_hub, wait_settled


@pytest.fixture
def hub(tmp_path):
    yield from running_hub(tmp_path)


def test_directory_renames_do_not_count_towards_the_deletion_threshold(hub):
    a = hub.roots["a"]
    (a / "big").mkdir(parents=True)
    for i in range(200):
        (a / "big" / f"f{i}.txt").write_text(f"file {i}\n")
    for i in range(10):
        (a / f"top{i}.txt").write_text(f"top {i}\n")
    hub.start()
    wait_settled(hub, lambda t: len(t) == 211)
    # 2 x 201 entries left their paths: counted as deletions, with 3 more that is 405 of 613 entries, over half
    os.rename(a / "big", a / "big2")
    wait_settled(hub, lambda t: "big2/f0.txt" in t and "big" not in t)
    os.rename(a / "big2", a / "big3")
    wait_settled(hub, lambda t: "big3/f0.txt" in t and "big2" not in t)
    for i in range(3):
        (a / f"top{i}.txt").unlink()
    final = wait_settled(hub, lambda t: "top0.txt" not in t)
    assert len(final) == 208
    assert "held until" not in hub.agent_logs()


def test_a_directory_moved_into_a_new_directory_is_a_rename_not_a_deletion(hub):
    """``mkdir new && mv old new/`` in a small folder: a rename, so nothing is held for approval and no replica keeps
    ``old/`` beside ``new/old/`` (it was taken for a deletion of everything in old/, over the threshold)."""
    a = hub.roots["a"]
    (a / "old").mkdir(parents=True)
    (a / "old" / "one.txt").write_text("one\n")
    (a / "keep.txt").write_text("keep\n")
    hub.start()
    wait_settled(hub, lambda t: "old/one.txt" in t)
    (a / "new").mkdir()
    os.rename(a / "old", a / "new" / "old")
    final = wait_settled(hub, lambda t: "new/old/one.txt" in t and "old" not in t)
    assert set(final) == {"keep.txt", "new", "new/old", "new/old/one.txt"}
    assert "held until" not in hub.agent_logs()
