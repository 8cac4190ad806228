"""The local driver's own inotify reader: watches follow directories made, moved in, moved about and moved out."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from onitu.sync.drivers.local_inotify import Inotify, RawEvent


@contextlib.contextmanager
def watching(root: Path) -> Iterator[Inotify]:
    watch = Inotify(str(root))
    try:
        yield watch
    finally:
        watch.close()


def gather(watch: Inotify, until: float = 0.5) -> list[tuple[str, str, str]]:
    """(kind, path, destination) of the events read within ``until`` seconds, paths relative to the root."""
    got: list[RawEvent] = []
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        got.extend(watch.read(0.05))
    return [(e.event_type, os.path.relpath(e.src_path, watch.root),
             os.path.relpath(e.dest_path, watch.root) if e.dest_path else "") for e in got]


def test_a_tree_moved_in_is_reported_whole_and_watched(tmp_path: Path) -> None:
    root, away = tmp_path / "root", tmp_path / "away"
    root.mkdir()
    (away / "a" / "b").mkdir(parents=True)
    (away / "a" / "one.txt").write_text("1")
    (away / "a" / "b" / "two.txt").write_text("2")
    with watching(root) as watch:
        os.rename(away, root / "tree")
        created = {path for kind, path, _ in gather(watch) if kind == "created"}
        assert {"tree", "tree/a", "tree/a/one.txt", "tree/a/b", "tree/a/b/two.txt"} <= created
        (root / "tree" / "a" / "b" / "three.txt").write_text("3")  # its directory is watched now
        assert ("created", "tree/a/b/three.txt", "") in gather(watch)


def test_moves_inside_are_moves_and_the_watches_follow(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d" / "sub").mkdir(parents=True)
    with watching(root) as watch:
        os.rename(root / "d", root / "e")
        assert gather(watch) == [("moved", "d", "e")]
        (root / "e" / "sub" / "new.txt").write_bytes(b"x")
        assert ("created", "e/sub/new.txt", "") in gather(watch)


def test_a_directory_moved_out_is_deleted_and_no_longer_watched(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d" / "sub").mkdir(parents=True)
    with watching(root) as watch:
        os.rename(root / "d", tmp_path / "gone")
        assert gather(watch) == [("deleted", "d", "")]
        (tmp_path / "gone" / "sub" / "later.txt").write_bytes(b"x")
        assert gather(watch, 0.3) == []


def test_a_file_written_unnamed_then_linked_is_one_creation(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with watching(root) as watch:
        fd, directory = os.open(root, os.O_TMPFILE | os.O_RDWR, 0o644), os.open(root, os.O_RDONLY)
        os.write(fd, b"data")
        os.link(f"/proc/self/fd/{fd}", "f.txt", dst_dir_fd=directory, follow_symlinks=True)
        os.close(fd)
        os.close(directory)
        named = [(kind, path) for kind, path, _ in gather(watch) if not path.startswith("#")]
        assert named == [("created", "f.txt")]
