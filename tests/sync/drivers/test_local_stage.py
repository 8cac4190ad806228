"""Staged local writes: which filesystems a batch is made durable on with one syncfs."""

from __future__ import annotations

import os

from onitu.sync.drivers import local_stage


def test_syncfs_stands_for_flushes_only_on_local_disk_filesystems():
    assert not local_stage._syncfs_makes_durable(os.stat("/proc").st_dev), "procfs taken for a disk"
    assert not local_stage._syncfs_makes_durable(-1 & 0xFFFFFFFF), "an unknown device taken for a disk"


def test_a_batch_opens_and_flushes_each_directory_once_and_leaves_no_descriptor(tmp_path, monkeypatch):
    """write_many publishes the files of a directory through one descriptor of it, fsynced once after the last of
    them and before the call returns; new files and replaced ones alike; a file that fails its check is not named."""
    import hashlib
    import stat

    from onitu.sync.drivers import open_driver
    from onitu.sync.drivers.contract import DriverError, WholeFile

    driver = open_driver("disk", "local", {"root": str(tmp_path / "root"), "settle": 0})
    driver.initialise()
    (tmp_path / "root" / "b").mkdir()
    (tmp_path / "root" / "b" / "old.txt").write_bytes(b"to be replaced")
    files = [WholeFile(f"{d}/{i}.txt", f"{d}{i}".encode(), hashlib.sha256(f"{d}{i}".encode()).hexdigest())
             for d in ("a", "b") for i in range(5)]
    files.append(WholeFile("b/old.txt", b"new", hashlib.sha256(b"new").hexdigest()))
    files.append(WholeFile("b/bad.txt", b"bad", "0" * 64))
    flushed: list[str] = []
    fsync = os.fsync

    def watched(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)
    monkeypatch.setattr(os, "fsync", watched)
    before = len(os.listdir("/proc/self/fd"))
    written = driver.write_many(files)
    assert len(os.listdir("/proc/self/fd")) == before, "a descriptor was left open"
    assert sorted(flushed) == [str(tmp_path / "root" / "a"), str(tmp_path / "root" / "b")]
    assert isinstance(written[-1], DriverError) and not (tmp_path / "root" / "b" / "bad.txt").exists()
    assert all(not isinstance(w, Exception) for w in written[:-1])
    assert (tmp_path / "root" / "b" / "old.txt").read_bytes() == b"new"
    assert all((tmp_path / "root" / f.path).read_bytes() == f.data for f in files[:-1])
    assert not [n for d in ("a", "b") for n in os.listdir(tmp_path / "root" / d) if n.startswith(".onitu-")]
    driver.close()
