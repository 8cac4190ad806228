"""A path's record in the space, ``(META, "folder/path", record)``: its agreed version and who holds which version.

``record = [agreed, holders, other]``: ``agreed`` is the agreed :class:`FileMeta` as a row (:meth:`FileMeta.to_row`:
kind, size, the hash as 32 raw bytes, version, tombstone, mtime; the path is the key's), ``holders`` the services
holding that version, ``other`` ``{service: row}`` the other versions some services hold (rare). The space keeps one
record per tracked path on each of its two servers, in memory and on disk, and ships each change to the secondary:
as rows a record takes about 110 bytes, where the earlier form (``{"meta": {...}, "holders": [...], "other": {...}}``,
field names spelled out, the hash in hex, the path twice) took 270. Records of that form are still read, so a
space written by an older Onitu loads, and each is rewritten in the new form the next time its path changes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from onitu.sync.decide.metadata import FileMeta

_LEGACY_KEYS = {"meta", "holders", "other"}


def encode(meta: FileMeta, holders: list[str], other: dict[str, FileMeta]) -> list[Any]:
    """The record of a path whose agreed version is ``meta``, held by ``holders``, with ``other`` versions."""
    return [meta.to_row(), holders, {service: m.to_row() for service, m in sorted(other.items())}]


def decode(path: str, record: Any) -> tuple[FileMeta, list[str], dict[str, FileMeta]]:
    """(agreed version, holders, other versions) of the record stored for ``path``, checked; ValueError says what
    is wrong with it."""
    if isinstance(record, dict):
        if set(record) != _LEGACY_KEYS:
            raise ValueError("a record must have exactly the keys meta, holders and other")
        meta, holders, other = FileMeta.from_wire(record["meta"]), record["holders"], record["other"]
        parse = FileMeta.from_wire
    elif isinstance(record, list | tuple) and len(record) == 3:
        meta, holders, other = FileMeta.from_row(path, record[0]), record[1], record[2]
        parse = partial(FileMeta.from_row, path)
    else:
        raise ValueError("a record must be a list of 3 values (agreed, holders, other)")
    if not isinstance(holders, list | tuple) or not all(isinstance(s, str) and s for s in holders):
        raise ValueError("holders must be a list of service names")
    if not isinstance(other, dict) or not all(isinstance(s, str) and s for s in other):
        raise ValueError("other must map service names to versions")
    versions = {service: parse(value) for service, value in other.items()}
    if any(m.path != path for m in (meta, *versions.values())):
        raise ValueError(f"metadata stored under another path ({path!r:.80})")
    return meta, list(holders), versions
