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

_ROW = struct.Struct("<BqQ")  # flags, mtime_ns, size; then the sha256 if any, then the fingerprint in UTF-8
_DIR, _SHA = 1, 2
_KINDS = {"file": 0, "dir": _DIR}
Row = bytes | Observed


def pack_hashed(sha256: str, fingerprint: str) -> bytes | None:
    """A file's hash and fingerprint as held by a plug: the hash's 32 raw bytes, then the fingerprint in UTF-8; None
    if the hash is not 64 lowercase hex digits (kept as given then: it must come back the same)."""
    if type(sha256) is not str or type(fingerprint) is not str or not SHA256.fullmatch(sha256):
        return None
    return bytes.fromhex(sha256) + fingerprint.encode("utf-8", "surrogatepass")


def unpack_hashed(data: bytes, start: int = 0) -> tuple[str, str]:
    """(sha256, fingerprint) of :func:`pack_hashed`'s bytes, found at ``start`` in ``data``."""
    return data[start:start + 32].hex(), data[start + 32:].decode("utf-8", "surrogatepass")


def _pack(obs: Observed) -> Row:
    flags = _KINDS.get(obs.kind)
    if flags is None or not (0 <= obs.size < 1 << 64 and -(1 << 63) <= obs.mtime_ns < 1 << 63) \
            or type(obs.fingerprint) is not str:
        return obs
    if obs.sha256 is None:
        return _ROW.pack(flags, obs.mtime_ns, obs.size) + obs.fingerprint.encode("utf-8", "surrogatepass")
    hashed = pack_hashed(obs.sha256, obs.fingerprint)
    return obs if hashed is None else _ROW.pack(flags | _SHA, obs.mtime_ns, obs.size) + hashed


def _unpack(row: Row) -> Observed:
    if type(row) is not bytes:
        return row  # type: ignore[return-value]
    flags, mtime_ns, size = _ROW.unpack_from(row)
    kind = "dir" if flags & _DIR else "file"
    if flags & _SHA:
        sha256, fingerprint = unpack_hashed(row, _ROW.size)  # no copy of the row's tail first: read per entry listed
        return Observed(kind, sha256, size, mtime_ns, fingerprint)
    return Observed(kind, None, size, mtime_ns, row[_ROW.size:].decode("utf-8", "surrogatepass"))



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

    def hashed(self, path: str) -> bytes | None:
        """The hash and fingerprint held for the file at ``path``, as :func:`pack_hashed` gives them (None: not a
        file with a packed hash): a plug's hash cache holds no second copy of them (see
        :class:`onitu.sync.plug.hash_cache.HashCache`)."""
        row = self._rows.get(path)
        return row[_ROW.size:] if type(row) is bytes and row[0] & _SHA else None

    def hashed_rows(self) -> Iterator[tuple[str, bytes]]:
        """(path, :meth:`hashed`) of every file with a packed hash; the table must not change meanwhile."""
        start = _ROW.size
        for path, row in self._rows.items():
            if type(row) is bytes and row[0] & _SHA:
                yield path, row[start:]
