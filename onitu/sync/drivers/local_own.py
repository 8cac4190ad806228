"""A local driver's own writes, remembered until its watcher sees them, so that they are not reported back as
changes: the plug that ordered a write knows it already. An entry is known as the driver's own by its fingerprint
(size, modification time and inode), taken from the written file itself."""

from __future__ import annotations

import os
import stat as st_mode

from onitu.sync.drivers.contract import Stat

KEPT = 4096  # writes remembered at most (past this, those never seen, after an overflow say, are forgotten)


def stat_of(path: str, info: os.stat_result) -> Stat:
    """The :class:`Stat` of the entry at ``path`` from what ``os.stat`` says of it."""
    if st_mode.S_ISDIR(info.st_mode):
        return Stat(path, True, 0, info.st_mtime_ns, f"d{info.st_ino}")
    return Stat(path, False, info.st_size, info.st_mtime_ns, f"{info.st_size}-{info.st_mtime_ns}-{info.st_ino}")


class OwnWrites:
    """Fingerprints of the entries written below ``root`` and not seen since, by path."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._written: dict[str, str] = {}

    def add(self, stat: Stat) -> Stat:
        """Remember ``stat`` as written here (before the entry has its name: the watcher can see the name at once)."""
        if len(self._written) >= KEPT:
            self._written.clear()
        self._written[stat.path] = stat.fingerprint
        return stat

    def drop(self, path: str) -> None:
        """Forget a write that did not happen after all."""
        self._written.pop(path, None)

    def seen(self, path: str, fingerprint: str) -> bool:
        """Whether the entry at ``path``, now ``fingerprint``, is exactly as written here. Each write answers once."""
        return self._written.pop(path, None) == fingerprint

    def seen_here(self, path: str) -> bool:
        """:meth:`seen` for a path a watcher was told of, looked at with one ``lstat`` and none of the driver's checks
        of a path: an entry with the fingerprint written (its inode among it) is the file written, wherever its name
        leads. False for a path not written here, or not ASCII (stored, maybe, in another normal form)."""
        expected = self._written.get(path)
        if expected is None or not path.isascii():
            return False
        try:
            info = os.lstat(os.path.join(self._root, path))
        except OSError:
            return False
        return stat_of(path, info).fingerprint == expected and self.seen(path, expected)
