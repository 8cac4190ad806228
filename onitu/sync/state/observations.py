"""Observations held packed (:class:`Observations`): path -> :class:`~onitu.sync.decide.plan.Observed`, one bytes
row each, rebuilt when read.

An Observed as objects costs about 330 bytes (the object, its hash as 64 hex digits, its fingerprint, size and
time); a row is about 110: flags, time and size, the raw 32-byte hash, then the fingerprint. Tables of them cover
every file of a replica: what a plug last reported (:class:`onitu.sync.plug.known.Known`), and in the referee what a
replica has that is not the agreed version (:class:`onitu.sync.state.replicas.Mirror`: during a first sync, every
file of the source, until its copies are agreed). What does not fit a row (a size beyond 64 bits, a hash that is not
64 lowercase hex digits) is kept as the Observed itself: correct, only not packed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, KeysView, Mapping, MutableMapping

from onitu.sync.decide.metadata import SHA256
from onitu.sync.decide.plan import Observed
from onitu.sync.state.rows import PackedTable

_ROW = struct.Struct("<BqQ")  # flags, mtime_ns, size; then the sha256 if any, then the fingerprint (see _tail)
_DIR, _SHA, _INO = 1, 2, 4
_INODE = struct.Struct("<Q")
_KINDS = {"file": 0, "dir": _DIR}
Row = bytes | Observed


def pack_hashed(sha256: str, fingerprint: str) -> bytes | None:
    """A file's hash and fingerprint as held by a plug: the hash's 32 raw bytes, then the fingerprint in UTF-8; None
    if the hash is not 64 lowercase hex digits (kept as given then: it must come back the same)."""
    if type(sha256) is not str or type(fingerprint) is not str or not SHA256.fullmatch(sha256):
        return None
    return bytes.fromhex(sha256) + fingerprint.encode("utf-8", "surrogatepass")


def unpack_hashed(data: bytes) -> tuple[str, str]:
    """(sha256, fingerprint) of :func:`pack_hashed`'s bytes."""
    return data[:32].hex(), data[32:].decode("utf-8", "surrogatepass")


def _pack(obs: Observed) -> Row:
    flags = _KINDS.get(obs.kind)
    if flags is None or not (0 <= obs.size < 1 << 64 and -(1 << 63) <= obs.mtime_ns < 1 << 63) \
            or type(obs.fingerprint) is not str:
        return obs
    if obs.sha256 is not None:
        if type(obs.sha256) is not str or not SHA256.fullmatch(obs.sha256):
            return obs  # kept as given: it must come back the same
        flags |= _SHA
    tail, short = _tail(obs.fingerprint, obs.size, obs.mtime_ns)
    row = _ROW.pack(flags | short, obs.mtime_ns, obs.size)
    return row + bytes.fromhex(obs.sha256) + tail if obs.sha256 is not None else row + tail


def _tail(fingerprint: str, size: int, mtime_ns: int) -> tuple[bytes, int]:
    """A fingerprint as a row holds it, and its flag: a local disk's ``size-mtime-inode`` (size and time are in the
    row already) as the inode's 8 bytes (25 bytes less per file), any other in UTF-8."""
    prefix = f"{size}-{mtime_ns}-"
    inode = fingerprint[len(prefix):] if fingerprint.startswith(prefix) else ""
    if inode.isascii() and inode.isdigit() and (inode == "0" or inode[0] != "0") and int(inode) < 1 << 64:
        return _INODE.pack(int(inode)), _INO
    return fingerprint.encode("utf-8", "surrogatepass"), 0


def _fingerprint(row: bytes, start: int, flags: int, size: int, mtime_ns: int) -> str:
    if flags & _INO:
        return f"{size}-{mtime_ns}-{_INODE.unpack_from(row, start)[0]}"
    return row[start:].decode("utf-8", "surrogatepass")


def _unpack(row: Row) -> Observed:
    if type(row) is not bytes:
        return row  # type: ignore[return-value]
    flags, mtime_ns, size = _ROW.unpack_from(row)
    kind = "dir" if flags & _DIR else "file"
    start = _ROW.size
    if flags & _SHA:  # read per entry listed: no copy of the row's tail first
        return Observed(kind, row[start:start + 32].hex(), size, mtime_ns,
                        _fingerprint(row, start + 32, flags, size, mtime_ns))
    return Observed(kind, None, size, mtime_ns, _fingerprint(row, start, flags, size, mtime_ns))


def _hashed(row: Row) -> bytes | None:
    """What :func:`pack_hashed` makes of a file row's hash and fingerprint (None: not a file row with a hash)."""
    if type(row) is not bytes or not row[0] & _SHA:
        return None
    flags, mtime_ns, size = _ROW.unpack_from(row)
    start = _ROW.size
    if not flags & _INO:
        return row[start:]
    return row[start:start + 32] + _fingerprint(row, start + 32, flags, size, mtime_ns).encode("ascii")


class Observations(PackedTable[Observed], MutableMapping[str, Observed]):
    """path -> :class:`Observed`, packed."""

    __slots__ = ()

    def __init__(self, entries: Mapping[str, Observed] | None = None) -> None:
        super().__init__()
        self._rows.update((path, _pack(obs)) for path, obs in (entries or {}).items())

    def _read(self, path: str, row: Row) -> Observed:
        return _unpack(row)

    def __setitem__(self, path: str, value: Observed) -> None:
        self._rows[path] = _pack(value)

    def __delitem__(self, path: str) -> None:
        del self._rows[path]

    def keys(self) -> KeysView[str]:
        return self._rows.keys()

    def discard(self, path: str) -> None:
        """Forget ``path`` if it is there (``pop`` without rebuilding what it held)."""
        self._rows.pop(path, None)

    def hashed(self, path: str) -> bytes | None:
        """The hash and fingerprint held for the file at ``path``, as :func:`pack_hashed` gives them (None: not a
        file with a packed hash): a plug's hash cache holds no second copy of them (see
        :class:`onitu.sync.plug.hash_cache.HashCache`)."""
        row = self._rows.get(path)
        return None if row is None else _hashed(row)

    def hashed_rows(self) -> Iterator[tuple[str, bytes]]:
        """(path, :meth:`hashed`) of every file with a packed hash; the table must not change meanwhile."""
        for path, row in self._rows.items():
            hashed = _hashed(row)
            if hashed is not None:
                yield path, hashed
