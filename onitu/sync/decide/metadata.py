"""What the hub knows of a file: :class:`FileMeta` and the :class:`VersionVector` that orders its versions.

Both convert to and from plain dicts (``to_wire``/``from_wire``) for the tuple space, which stores msgpack values.
``from_wire`` trusts nothing: whatever another process (or a corrupted space) hands in is checked field by field and
refused with a ValueError that says what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from onitu.sync.drivers.contract import safe_path

SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_COUNTER = (1 << 63) - 1  # msgpack's int64, and far beyond any real history
_MAX_SERVICE = 255
_INTERNED: dict[tuple[tuple[str, int], ...], VersionVector] = {}
_INTERNED_MAX = 1 << 16
Kind = Literal["file", "dir"]


class Causality(Enum):
    """How two version vectors relate."""

    EQUAL = "equal"
    DESCENDS = "descends"  # the left one has seen everything the right one has, and more
    PRECEDES = "precedes"  # the right one descends from the left one
    CONCURRENT = "concurrent"  # each has seen changes the other has not: a conflict


@dataclass(frozen=True)
class VersionVector:
    """Per service, how many changes it made to a file (absent means 0). Immutable; operations return new ones."""

    counters: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A private sorted copy: equality and wire form do not depend on insertion order, nor on the caller's dict.
        clean = {service: count for service, count in sorted(self.counters.items()) if count}
        object.__setattr__(self, "counters", clean)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self.counters.items())

    def __hash__(self) -> int:
        return hash(tuple(self.counters.items()))

    def get(self, service: str) -> int:
        """The counter of ``service`` (0 if it never changed the file)."""
        return self.counters.get(service, 0)

    @classmethod
    def of(cls, counters: Mapping[str, int]) -> VersionVector:
        """The version with these counters, shared with every other use of it (most files have one of a few
        versions, such as "one change by the service that made it": one object each, not one per file)."""
        key = tuple(sorted((s, c) for s, c in counters.items() if c))
        found = _INTERNED.get(key)
        if found is None:
            if len(_INTERNED) >= _INTERNED_MAX:
                _INTERNED.clear()
            found = _INTERNED[key] = cls(dict(key))
        return found

    def bump(self, service: str) -> VersionVector:
        """This version with one more change by ``service``."""
        return VersionVector.of({**self.counters, service: self.get(service) + 1})

    def merge(self, other: VersionVector) -> VersionVector:
        """The least version that descends from (or equals) both."""
        services = self.counters.keys() | other.counters.keys()
        return VersionVector.of({s: max(self.get(s), other.get(s)) for s in services})

    def compare(self, other: VersionVector) -> Causality:
        """How this version relates to ``other``."""
        services = self.counters.keys() | other.counters.keys()
        ahead = any(self.get(s) > other.get(s) for s in services)
        behind = any(self.get(s) < other.get(s) for s in services)
        if ahead and behind:
            return Causality.CONCURRENT
        return Causality.DESCENDS if ahead else Causality.PRECEDES if behind else Causality.EQUAL

    def to_wire(self) -> dict[str, int]:
        """A plain ``{service: counter}`` dict."""
        return dict(self.counters)

    @classmethod
    def from_wire(cls, value: Any) -> VersionVector:
        """Parse and check a ``{service: counter}`` dict."""
        if not isinstance(value, dict):
            raise ValueError(f"a version vector must be a mapping, not {type(value).__name__}")
        for service, count in value.items():
            if not isinstance(service, str) or not 0 < len(service) <= _MAX_SERVICE:
                raise ValueError(f"version vector: service names must be non-empty text, got {service!r:.60}")
            if type(count) is not int or not 0 <= count <= _MAX_COUNTER:
                raise ValueError(f"version vector: counter of {service!r} must be a non-negative integer, "
                                 f"got {count!r:.60}")
        return cls.of(value)


_FIELDS = ("path", "kind", "size", "sha256", "version", "tombstone", "mtime_ns")


@dataclass(frozen=True, slots=True)
class FileMeta:
    """The hub's agreed state of one path: a file (with its content hash), a directory, or a tombstone.

    A tombstone records a deletion (its version orders it against later changes); it has no hash and size 0.
    """

    path: str
    kind: Kind = "file"
    size: int = 0
    sha256: str | None = None
    version: VersionVector = field(default_factory=VersionVector)
    tombstone: bool = False
    mtime_ns: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", safe_path(self.path))
        if self.kind not in ("file", "dir"):
            raise ValueError(f"{self.path}: kind must be 'file' or 'dir', not {self.kind!r:.40}")
        if type(self.size) is not int or self.size < 0:
            raise ValueError(f"{self.path}: size must be a non-negative integer, not {self.size!r:.40}")
        if type(self.mtime_ns) is not int:
            raise ValueError(f"{self.path}: mtime_ns must be an integer, not {self.mtime_ns!r:.40}")
        if not isinstance(self.version, VersionVector) or type(self.tombstone) is not bool:
            raise ValueError(f"{self.path}: version must be a VersionVector and tombstone a boolean")
        live_file = self.kind == "file" and not self.tombstone
        if live_file and not (isinstance(self.sha256, str) and SHA256.fullmatch(self.sha256)):
            raise ValueError(f"{self.path}: a file needs a sha256 of 64 lowercase hex digits, "
                             f"not {self.sha256!r:.70}")
        if not live_file and (self.sha256 is not None or self.size):
            raise ValueError(f"{self.path}: a directory or a tombstone has no sha256 and size 0")

    @classmethod
    def trusted(cls, path: str, kind: Kind, size: int, sha256: str | None, version: VersionVector,
                tombstone: bool, mtime_ns: int) -> FileMeta:
        """A FileMeta of values that were checked when they came in (the referee's packed copy): not checked
        again, as it is rebuilt each time it is read."""
        meta = object.__new__(cls)
        _set_path(meta, path)
        _set_kind(meta, kind)
        _set_size(meta, size)
        _set_sha256(meta, sha256)
        _set_version(meta, version)
        _set_tombstone(meta, tombstone)
        _set_mtime_ns(meta, mtime_ns)
        return meta

    def to_wire(self) -> dict[str, Any]:
        """A plain dict of plain values."""
        return {"path": self.path, "kind": self.kind, "size": self.size, "sha256": self.sha256,
                "version": self.version.to_wire(), "tombstone": self.tombstone, "mtime_ns": self.mtime_ns}

    @classmethod
    def from_wire(cls, value: Any) -> FileMeta:
        """Parse and check a dict made by :meth:`to_wire`."""
        if not isinstance(value, dict):
            raise ValueError(f"file metadata must be a mapping, not {type(value).__name__}")
        missing = [key for key in _FIELDS if key not in value]
        unknown = [str(key)[:40] for key in value if key not in _FIELDS]
        if missing or unknown:
            raise ValueError(f"file metadata: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
        if not isinstance(value["path"], str):
            raise ValueError("file metadata: path must be text")
        try:
            return cls(value["path"], value["kind"], value["size"], value["sha256"],
                       VersionVector.from_wire(value["version"]), value["tombstone"], value["mtime_ns"])
        except ValueError as exc:
            raise ValueError(f"file metadata: {exc}") from None

    def to_row(self) -> list[Any]:
        """A compact list, for a record stored under the path's own key: kind, size, the hash as 32 raw bytes,
        version, tombstone, mtime_ns (no path)."""
        sha256 = None if self.sha256 is None else bytes.fromhex(self.sha256)
        return [self.kind, self.size, sha256, self.version.to_wire(), self.tombstone, self.mtime_ns]

    @classmethod
    def from_row(cls, path: str, row: Any) -> FileMeta:
        """Parse and check a list made by :meth:`to_row`, the metadata of ``path``."""
        if not isinstance(row, list | tuple) or len(row) != 6:
            raise ValueError("file metadata: a row must be a list of 6 values (kind, size, sha256, version, "
                             "tombstone, mtime_ns)")
        kind, size, sha256, version, tombstone, mtime_ns = row
        if sha256 is not None:
            if not isinstance(sha256, bytes) or len(sha256) != 32:
                raise ValueError(f"file metadata: a sha256 must be 32 bytes, not {sha256!r:.70}")
            sha256 = sha256.hex()
        try:
            return cls(path, kind, size, sha256, VersionVector.from_wire(version), tombstone, mtime_ns)
        except ValueError as exc:
            raise ValueError(f"file metadata: {exc}") from None


# the slots' own setters: a frozen dataclass refuses attribute assignment, and FileMeta.trusted is on a hot path
(_set_path, _set_kind, _set_size, _set_sha256, _set_version, _set_tombstone,
 _set_mtime_ns) = (FileMeta.__dict__[name].__set__ for name in _FIELDS)
