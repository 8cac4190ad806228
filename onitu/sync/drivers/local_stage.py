"""Staged writes on a local disk: data becomes visible whole, verified and durable, or not at all.

The data is written to a file with no name (``O_TMPFILE``) and linked at its final name once its hash is checked and
it is on disk. Nothing half-written ever has a name, and a watcher of the directory (our own among them) sees one
creation instead of a staging file created, written, closed and renamed. A transfer that fails half-way, and one
long enough that a kill would waste much, is linked at a ``.onitu-tmp-`` staging name instead, so that it can be
resumed. Where the filesystem has no ``O_TMPFILE``, the staging name is used from the start. Small files written
together are all staged, then made durable together (:func:`durable`), then named, and each directory is flushed once
for them all before the writes are reported done.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from onitu.sync.drivers.contract import CHUNK

RESUMABLE = 4 * CHUNK  # bytes after which an unnamed write gets its staging name (a kill then loses nothing)
_PROC_FD = "/proc/self/fd"
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS}
_unnamed_ok = hasattr(os, "O_TMPFILE") and os.path.isdir(_PROC_FD)
SYNCFS_FROM = 4  # files made durable together from which one syncfs replaces a flush of each
SYNCFS_KINDS = {"ext4", "ext3", "xfs", "btrfs", "f2fs", "tmpfs"}  # local filesystems whose syncfs makes data durable
_durable_by_syncfs: dict[int, bool] = {}  # device -> whether its filesystem is of those


def _find_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2) (Python has no binding), or None."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    return syncfs  # type: ignore[no-any-return]


_syncfs = _find_syncfs() if sys.platform.startswith("linux") else None


@dataclass
class Staged:
    """An open staged file: its descriptor, the sha256 of everything in it, whether it has its staging name, and its
    stat once written (what was written: its fingerprint, and the device it is on)."""

    fd: int
    digest: str
    named: bool
    info: os.stat_result


def stage(temp: str, chunks: Iterable[bytes], resume_from: int, *, sync: bool = True) -> Staged:
    """Write ``chunks`` (the file from ``resume_from`` on, after what is staged at ``temp``) and fsync it (unless
    ``sync`` is false: the caller makes it durable with others, :func:`durable`, before publishing it).

    If ``chunks`` raises, what arrived is kept at ``temp`` for a later resume, and the error propagates.
    """
    global _unnamed_ok
    fd, named = -1, True
    if not resume_from and _unnamed_ok:
        try:
            fd, named = os.open(os.path.dirname(temp), os.O_TMPFILE | os.O_RDWR, 0o644), False
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise
            _unnamed_ok = False  # this kernel or filesystem cannot: named staging from now on
    if named:
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | (0 if resume_from else os.O_TRUNC), 0o644)
    try:
        digest = hashlib.sha256()
        if resume_from:
            _hash_prefix(fd, resume_from, digest)
        written = resume_from
        try:
            for data in chunks:
                _write_all(fd, data)
                digest.update(data)
                written += len(data)
                if not named and written > RESUMABLE:
                    named = _name(fd, temp)
        except BaseException:
            if not named and written:
                with contextlib.suppress(OSError):  # (the original error matters more)
                    _name(fd, temp)
            raise
        if sync:
            os.fsync(fd)
        return Staged(fd, digest.hexdigest(), named, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise


def durable(staged: Iterable[Staged]) -> None:
    """Make files staged with ``sync=False`` durable: one ``syncfs`` per filesystem they are on when they are many
    (it writes them back in one pass and commits the journal once: a fraction of the time and CPU of a flush per
    file), else, or where ``syncfs`` is missing, fails or is not known to make data durable, a flush of each."""
    staged = list(staged)
    if len(staged) >= SYNCFS_FROM and _syncfs is not None:
        devices = {one.info.st_dev: one.fd for one in staged}
        if all(_syncfs_makes_durable(dev) for dev in devices) and all(_syncfs(fd) == 0 for fd in devices.values()):
            return
    for one in staged:
        os.fsync(one.fd)


def _syncfs_makes_durable(device: int) -> bool:
    """Whether the filesystem on ``device`` is one whose syncfs writes data back and commits it (not a FUSE or
    network filesystem, where only a flush of each file is sure to reach the storage)."""
    if device not in _durable_by_syncfs:
        kind = None
        with contextlib.suppress(OSError, ValueError, IndexError), \
                open("/proc/self/mountinfo", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if fields[2] == f"{os.major(device)}:{os.minor(device)}":
                    kind = fields[fields.index("-") + 1]
                    break
        _durable_by_syncfs[device] = kind in SYNCFS_KINDS
    return _durable_by_syncfs[device]


def publish(staged: Staged, temp: str, full: str, *, directory: int | None = None) -> None:
    """Give the verified file its final name ``full`` (replacing what is there) and close it, durably; or, given
    ``directory`` (a descriptor of the directory of ``full``, open for many files), not yet: the caller fsyncs that
    directory (once for them all) before telling anyone."""
    if directory is not None:
        _publish_in(staged, temp, full, directory)
        return
    directory = os.open(os.path.dirname(full), os.O_RDONLY | os.O_DIRECTORY)
    try:
        _publish_in(staged, temp, full, directory)
        os.fsync(directory)
    finally:
        os.close(directory)


def _publish_in(staged: Staged, temp: str, full: str, directory: int) -> None:
    try:
        if not staged.named:
            try:
                _link(staged.fd, directory, os.path.basename(full))
                staged.named = True
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)  # what an earlier, failed try of this path left staged: this one replaces it
                return
            except FileExistsError:  # replacing a file: through the staging name, atomically
                staged.named = _name(staged.fd, temp)
        os.replace(temp, full)
    finally:
        os.close(staged.fd)


def abandon(staged: Staged, temp: str) -> None:
    """Drop a staged file that will not be published (a hash mismatch, a stale order)."""
    os.close(staged.fd)
    if staged.named:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _name(fd: int, temp: str) -> bool:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)  # an older staged attempt of the same path
    directory = os.open(os.path.dirname(temp), os.O_RDONLY | os.O_DIRECTORY)
    try:
        _link(fd, directory, os.path.basename(temp))
    finally:
        os.close(directory)
    return True


def _link(fd: int, directory: int, name: str) -> None:
    # linkat(2) with AT_SYMLINK_FOLLOW through /proc names the open file itself; os.link uses linkat, and that flag,
    # only when given a directory descriptor (plain link(2) would link the /proc symbolic link)
    os.link(f"{_PROC_FD}/{fd}", name, dst_dir_fd=directory, follow_symlinks=True)


def _hash_prefix(fd: int, length: int, digest: hashlib._Hash) -> None:
    staged = os.fstat(fd).st_size
    if staged < length:
        raise ValueError(f"cannot resume from {length}: {staged} bytes staged")
    os.ftruncate(fd, length)
    offset = 0
    while offset < length:
        data = os.pread(fd, min(CHUNK, length - offset), offset)
        digest.update(data)
        offset += len(data)
    os.lseek(fd, length, os.SEEK_SET)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
