"""A case-insensitive, case-preserving directory for tests, as macOS and Windows disks are: a FUSE passthrough to
a backing directory in which a name finds an entry whose name differs from it only in case.

Linux's own case-insensitive filesystems (ext4 and tmpfs casefold) need a kernel built with CONFIG_UNICODE, XFS's
ascii-ci is gone, and vfat is not always there; FUSE is. Run ``python -m tests.sync.casefold BACKING MOUNTPOINT``
(in the foreground until ``fusermount3 -u MOUNTPOINT``); :func:`mounted` does that for a test.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STAT_KEYS = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_ino", "st_dev")


def unavailable() -> str | None:
    """Why this machine cannot mount it (None if it can)."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse3: {exc}"
    return None


@contextlib.contextmanager
def mounted(backing: Path, mountpoint: Path) -> Iterator[Path]:
    """``mountpoint`` as a case-insensitive view of ``backing`` for the time of the block."""
    backing.mkdir(parents=True, exist_ok=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "tests.sync.casefold", str(backing), str(mountpoint)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.ismount(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the case-insensitive mount did not come up: {proc.stderr.read().decode()}")
            time.sleep(0.05)
        yield mountpoint
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(backing: str, mountpoint: str) -> None:
    import mfusepy as fuse

    class CaseFold(fuse.Operations):
        use_ns = True

        def __init__(self, root: str) -> None:
            self.root = os.path.realpath(root)

        def real(self, path: str) -> str:
            """The backing path: each component is the entry of that name, else one differing only in case."""
            real = self.root
            for part in path.strip("/").split("/"):
                if not part:
                    continue
                candidate = os.path.join(real, part)
                if not os.path.lexists(candidate):
                    with contextlib.suppress(OSError):
                        folded = part.casefold()
                        candidate = os.path.join(real, next(
                            (n for n in os.listdir(real) if n.casefold() == folded), part))
                real = candidate
            return real

        def __call__(self, op: str, path: str, *args: Any) -> Any:
            try:
                return super().__call__(op, path, *args)
            except OSError as exc:
                raise fuse.FuseOSError(exc.errno or errno.EIO) from None

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            st = os.lstat(self.real(path))
            return {**{k: getattr(st, k) for k in STAT_KEYS}, "st_atime": st.st_atime_ns,
                    "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns}

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self.real(path))]

        def access(self, path: str, amode: int) -> int:
            if not os.access(self.real(path), amode):
                raise fuse.FuseOSError(errno.EACCES)
            return 0

        def statfs(self, path: str) -> dict[str, Any]:
            st = os.statvfs(self.real(path))
            return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

        def mkdir(self, path: str, mode: int) -> None:
            os.mkdir(self.real(path), mode)

        def rmdir(self, path: str) -> None:
            os.rmdir(self.real(path))

        def unlink(self, path: str) -> None:
            os.unlink(self.real(path))

        def rename(self, old: str, new: str) -> None:
            os.rename(self.real(old), self.real(new))

        def link(self, target: str, source: str) -> None:
            os.link(self.real(source), self.real(target))

        def symlink(self, target: str, source: str) -> None:
            os.symlink(source, self.real(target))

        def readlink(self, path: str) -> str:
            return os.readlink(self.real(path))

        def chmod(self, path: str, mode: int) -> None:
            os.chmod(self.real(path), mode)

        def chown(self, path: str, uid: int, gid: int) -> None:
            os.chown(self.real(path), uid, gid)

        def truncate(self, path: str, length: int, fh: int | None = None) -> None:
            os.truncate(self.real(path), length)

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
            os.utime(self.real(path), ns=times)

        def open(self, path: str, flags: int) -> int:
            return os.open(self.real(path), flags)

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            return os.open(self.real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return os.pwrite(fh, data, offset)

        def flush(self, path: str, fh: int) -> None:
            return None

        def fsync(self, path: str, datasync: int, fh: int) -> None:
            os.fsync(fh)

        def release(self, path: str, fh: int) -> None:
            os.close(fh)

    # No caching by the kernel: a name's meaning changes when another name differing in case comes or goes.
    fuse.FUSE(CaseFold(backing), mountpoint, foreground=True, entry_timeout=0, attr_timeout=0, negative_timeout=0)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
