"""What the loopback servers' fixtures share: unique names for each test's space, and reading a served tree."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

_counter = itertools.count(1)
_hashed: dict[tuple[str, int, int, int], str] = {}  # (path, inode, size, mtime_ns) -> sha256: tests poll big trees


def fresh_name(prefix: str = "t") -> str:
    """A name no earlier test of this process used: each test gets its own folder or bucket on a shared server.
    (Letters, digits and dashes only, at least 3 characters: valid for S3 buckets too.)"""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


def files_under(root: Path) -> dict[str, str]:
    """``{relative POSIX path: sha256}`` of every file under ``root``, read from disk (not through any driver)."""
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            try:
                st = path.stat()
                key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
                if key not in _hashed:
                    _hashed[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:  # renamed or deleted by the server meanwhile
                continue
            found[path.relative_to(root).as_posix()] = _hashed[key]
    return found
