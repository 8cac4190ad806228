"""One folder's agreed versions and who has them: path -> :class:`FileMeta`, packed to about 100 bytes a path.

The referee keeps the agreed version of every tracked path in memory (hundreds of thousands of them). As objects,
one costs about 300 bytes (the FileMeta, its hash as 64 hex digits, its size and time as integers), and two bit masks
of services beside it (those the ledger records holding it, those whose current entry the mirror finds matching it)
another 100 in tables of their own. Here each path is one bytes row: size, time, version number, flags, the raw
32-byte hash, then the two masks; the FileMeta is rebuilt when read. Versions are numbered in a table shared by every
folder: a folder has few distinct versions (most files were changed once, by one service). The path is the table's
key, and the rebuilt FileMeta's ``path`` is that same string, so the referee's other tables can share it.

What does not fit a row (an integer beyond 64 bits, more distinct versions than :data:`VERSIONS`) is kept as a
(FileMeta, holders, matching) tuple: correct, only not packed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from onitu.sync.decide.metadata import FileMeta, VersionVector
from onitu.sync.decide.plan import content_of
from onitu.sync.state.rows import PackedTable

VERSIONS = 1 << 20  # distinct versions numbered; later ones are kept unpacked
_ROW = struct.Struct("<QqIB")  # size, mtime_ns, version number, flags; then the sha256 if any, then the two masks
_DIR, _TOMBSTONE, _SHA = 1, 2, 4
_FLAGS = _ROW.size - 1
_versions: list[VersionVector] = []
_numbers: dict[VersionVector, int] = {}
Row = bytes | tuple[FileMeta, int, int]


def _number(version: VersionVector) -> int | None:
    number = _numbers.get(version)
    if number is None and len(_versions) < VERSIONS:
        number = _numbers[version] = len(_versions)
        _versions.append(version)
    return number


def _masks(holders: int, matching: int) -> bytes:
    """Both masks with as many bytes each, so that a row's length says where the second starts."""
    width = (max(holders.bit_length(), matching.bit_length()) + 7) // 8
    return holders.to_bytes(width, "little") + matching.to_bytes(width, "little")


def _pack(meta: FileMeta, holders: int, matching: int) -> Row:
    number = _number(meta.version)
    if number is None or not (0 <= meta.size < 1 << 64 and -(1 << 63) <= meta.mtime_ns < 1 << 63):
        return meta, holders, matching
    flags = (_DIR if meta.kind == "dir" else 0) | (_TOMBSTONE if meta.tombstone else 0)
    if meta.sha256 is None:
        return _ROW.pack(meta.size, meta.mtime_ns, number, flags) + _masks(holders, matching)
    return _ROW.pack(meta.size, meta.mtime_ns, number, flags | _SHA) + bytes.fromhex(meta.sha256) + \
        _masks(holders, matching)


def _unpack(path: str, row: Row) -> FileMeta:
    if type(row) is not bytes:
        return row[0]  # type: ignore[index]
    size, mtime_ns, number, flags = _ROW.unpack_from(row)
    sha256 = row[_ROW.size:_ROW.size + 32].hex() if flags & _SHA else None
    return FileMeta.trusted(path, "dir" if flags & _DIR else "file", size, sha256, _versions[number],
                            bool(flags & _TOMBSTONE), mtime_ns)


def _head(row: bytes) -> int:
    """Where the masks of a packed row start."""
    return _ROW.size + 32 if row[_FLAGS] & _SHA else _ROW.size


def _masks_of(row: Row) -> tuple[int, int]:
    """(holders, matching) of a row."""
    if type(row) is not bytes:
        return row[1], row[2]  # type: ignore[index]
    start = _head(row)
    middle = start + (len(row) - start) // 2
    return int.from_bytes(row[start:middle], "little"), int.from_bytes(row[middle:], "little")


class Agreed(PackedTable[FileMeta]):
    """path -> agreed FileMeta of one folder, with the services holding it and those matching it, packed."""

    __slots__ = ()
    _read = staticmethod(_unpack)

    def holders(self, path: str) -> int:
        """The bit mask of the services recorded holding the agreed version of ``path`` (0: none, or unknown)."""
        row = self._rows.get(path)
        return 0 if row is None else _masks_of(row)[0]

    def matching(self, path: str) -> int:
        """The bit mask of the services whose current entry at ``path`` has the agreed content (the mirror's)."""
        row = self._rows.get(path)
        return 0 if row is None else _masks_of(row)[1]

    def put(self, meta: FileMeta, holders: int) -> None:
        """Make ``meta`` the agreed version of its path, held by the services of ``holders``. The matching mask
        stays if the content (kind and hash) stays; else it is cleared."""
        old, matching = self._rows.get(meta.path), 0
        if old is not None and content_of(_unpack(meta.path, old)) == content_of(meta):
            matching = _masks_of(old)[1]
        self._rows[meta.path] = _pack(meta, holders, matching)

    def set_matching(self, path: str, mask: int) -> None:
        """Set the matching mask of a known ``path``."""
        row = self._rows[path]
        holders = _masks_of(row)[0]
        if type(row) is bytes:
            self._rows[path] = row[:_head(row)] + _masks(holders, mask)
        else:
            self._rows[path] = (row[0], holders, mask)  # type: ignore[index]

    def remove(self, path: str) -> None:
        """Forget ``path`` (no error if unknown)."""
        self._rows.pop(path, None)

    def held_by(self, bit: int) -> Iterator[str]:
        """The paths whose agreed version the service of ``bit`` holds (an iterator: the table must not change
        meanwhile)."""
        return (path for path, row in self._rows.items() if _masks_of(row)[0] & bit)

    def matched_by(self, bit: int) -> Iterator[str]:
        """The paths where the current entry of the service of ``bit`` has the agreed content (an iterator)."""
        return (path for path, row in self._rows.items() if _masks_of(row)[1] & bit)

    def is_live(self, path: str) -> bool:
        """Whether ``path`` is agreed to exist (known, and not a tombstone), without rebuilding its FileMeta."""
        row = self._rows.get(path)
        if type(row) is bytes:
            return not row[_FLAGS] & _TOMBSTONE
        return row is not None and not row[0].tombstone  # type: ignore[index]
