"""Indexes: which stored tuples a template could match, in the order they are found, without a scan.

:class:`FifoIndex` is the everyday index (oldest first). Tuples are bucketed by shape (size, or key set for dicts),
then by ``(shape, first element)``, and inside a head bucket by second element, so a template with one or two
leading constants only visits tuples that share them. Buckets are append-only id lists with lazy deletion: a removed
id stays as a tombstone until the bucket is walked or compacted, which keeps removal O(1) and memory near 8 bytes
per id per level (ids are held in arrays: a tombstone keeps no int object alive). Unique second elements (a task
number, a path) are the common case, and a decoded key is the biggest object an entry has besides its bytes (80
bytes for a path): a key held by one tuple is filed under a 30-bit hash of it in ``single`` (12 bytes a slot, see
:mod:`onitu.space.slots`), and only a key shared by several tuples, or whose hash another key has too, under itself
in ``second``. An id found
through ``single`` is only a candidate (its key is not known to be the template's), so such a lookup is not exact.

:class:`RindaIndex` reproduces Ruby Rinda's bins (symbol-headed tuples per symbol, LIFO for take/read) for the
differential tests; it scans and is not meant for large spaces.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterator
from typing import Protocol

from onitu.space.packed import unpack_held
from onitu.space.slots import HashSlots
from onitu.space.template import Symbol, Template

_NO_KEY = object()
_SCALARS = frozenset({str, int, bool, bytes, Symbol, type(None)})  # hashable without asking (floats: see _key)
_HASH_BITS = (1 << 30) - 1  # a hash in a one-digit int (cached ints aside, the smallest there is)


def _key(v: object) -> Hashable:
    """An index key for a constant, or _NO_KEY when the value cannot be indexed (containers, NaN-like)."""
    kind = type(v)
    if kind in _SCALARS:
        return v
    if kind is float:  # NaN equals nothing, not even its own decoded copy: such a tuple could never be found again
        return v if v == v else _NO_KEY
    if kind in (list, tuple, dict):
        return _NO_KEY
    try:
        hash(v)
    except TypeError:
        return _NO_KEY
    return v


def shape(tup: tuple | dict) -> Hashable:
    """Tuples of one shape are the only ones a template of that shape can match; [] and {} share shape 0."""
    if type(tup) is dict and tup:
        return frozenset(tup)
    return len(tup)


class Bucket:
    """Ids in insertion (= age) order; removals are tombstones, compacted when they outnumber the living."""

    __slots__ = ("dead", "ids", "start")

    def __init__(self) -> None:
        self.ids = array("q")
        self.start = 0
        self.dead = 0

    def __len__(self) -> int:
        return len(self.ids) - self.start - self.dead

    def add(self, eid: int) -> None:
        self.ids.append(eid)

    def discard(self, live: dict) -> None:
        """Count one tombstone; compact when half the bucket is dead."""
        self.dead += 1
        if self.dead * 2 > len(self.ids) - self.start and self.dead > 8:
            self.ids = array("q", [e for e in self.ids[self.start :] if e in live])
            self.start = self.dead = 0

    def walk(self, live: dict) -> Iterator[int]:
        ids = self.ids
        # Drop tombstones at the front for good, so FIFO takes stay O(1).
        while self.start < len(ids) and ids[self.start] not in live:
            self.start += 1
            self.dead -= 1
        if self.start > 64 and self.start * 2 > len(ids):
            del ids[: self.start]
            self.start = 0
        for i in range(self.start, len(ids)):
            eid = ids[i]
            if eid in live:
                yield eid


class HeadBucket(Bucket):
    """The tuples of one (shape, first element), and inside it by second element: ``second`` {element: id |
    Bucket}, ``single`` {hash of an element held by one tuple: its id} (see the module's docstring). One lookup of
    the head key reaches both levels."""

    __slots__ = ("second", "single")

    def __init__(self) -> None:
        super().__init__()
        self.second: dict[Hashable, int | Bucket] = {}
        self.single = HashSlots()


class Index(Protocol):
    """How the store finds candidates; ``add``/``remove`` keep it in step with the live tuples."""

    def add(self, eid: int, tup: tuple | dict) -> None: ...
    def remove(self, eid: int, tup: tuple | dict, taken: bool) -> None: ...
    def candidates(self, template: Template, all_matches: bool) -> Iterator[int]: ...
    def exact(self, template: Template) -> bool: ...


class FifoIndex:
    """Oldest-first candidates from the narrowest bucket the template's leading constants allow."""

    def __init__(self, live: dict) -> None:
        self.live = live
        self.by_shape: dict[Hashable, Bucket] = {}
        self.by_head: dict[tuple, HeadBucket] = {}

    def add(self, eid: int, tup: tuple | dict) -> None:
        # The hottest path of a batched write: buckets are appended to directly, scalar keys taken as they are.
        sk = shape(tup)
        bucket = self.by_shape.get(sk)
        if bucket is None:
            bucket = self.by_shape[sk] = Bucket()
        bucket.ids.append(eid)
        if type(tup) is dict or not tup:
            return
        h0 = tup[0]
        if type(h0) not in _SCALARS and (h0 := _key(h0)) is _NO_KEY:
            return
        hk = (sk, h0)
        head = self.by_head.get(hk)
        if head is None:
            head = self.by_head[hk] = HeadBucket()
        head.ids.append(eid)
        if len(tup) < 2:
            return
        h1 = tup[1]
        if type(h1) not in _SCALARS and (h1 := _key(h1)) is _NO_KEY:
            return
        sub = head.second
        held = sub.get(h1)
        if held is None:
            single, hashed = head.single, hash(h1) & _HASH_BITS
            other = single.get(hashed)
            if other is None:
                single.add(hashed, eid)
                return
            # A second tuple whose key has this hash (most often the same key): both keys are filed as themselves.
            single.pop(hashed)
            other_key = _key(unpack_held(self.live[other])[1])
            sub[other_key] = other
            held = sub.get(h1)
            if held is None:
                sub[h1] = eid
                return
        if type(held) is int:
            held = sub[h1] = _bucket_of(held)
        held.ids.append(eid)

    def remove(self, eid: int, tup: tuple | dict, taken: bool) -> None:
        # Called after eid left `live`.
        live = self.live
        sk = shape(tup)
        self._discard(self.by_shape, sk)
        if type(tup) is dict or not tup or (h0 := _key(tup[0])) is _NO_KEY:
            return
        hk = (sk, h0)
        if len(tup) >= 2 and (h1 := _key(tup[1])) is not _NO_KEY:
            head = self.by_head[hk]
            sub = head.second
            held = sub.get(h1)
            if held is None:
                head.single.pop(hash(h1) & _HASH_BITS)
            elif type(held) is int or len(held) <= 1:
                del sub[h1]
            else:
                held.discard(live)
                if len(held) == 1:
                    self._unshare(head, h1, next(held.walk(live)))
        self._discard(self.by_head, hk)

    @staticmethod
    def _unshare(head: HeadBucket, key: Hashable, eid: int) -> None:
        """A key left with one tuple is filed under its hash again if that slot is free (else as itself, without
        its bucket): a key shared for a moment (a record written before the old one is taken) would otherwise
        keep its decoded key and a bucket for good, two thirds as much again as the tuple's own bytes."""
        del head.second[key]
        hashed = hash(key) & _HASH_BITS
        if head.single.get(hashed) is None:
            head.single.add(hashed, eid)
        else:
            head.second[key] = eid

    def _discard(self, table: dict, key: Hashable) -> None:
        bucket = table[key]
        if len(bucket) <= 1:
            del table[key]
        else:
            bucket.discard(self.live)

    def candidates(self, template: Template, all_matches: bool) -> Iterator[int]:
        if template.is_dict:
            sk: Hashable = frozenset(template.pattern) if template.size else 0
        else:
            sk = template.size
        head = template.head(1)
        h0 = _key(head[0]) if head else _NO_KEY
        if h0 is _NO_KEY:
            bucket = self.by_shape.get(sk)
            return bucket.walk(self.live) if bucket else iter(())
        hk = (sk, h0)
        head2 = template.head(2)
        h1 = _key(head2[1]) if head2 else _NO_KEY
        if h1 is not _NO_KEY:
            head = self.by_head.get(hk)
            if head is None:
                return iter(())
            held = head.second.get(h1)
            if held is None:
                held = head.single.get(hash(h1) & _HASH_BITS)
                return iter(()) if held is None else iter((held,))
            return iter((held,)) if type(held) is int else held.walk(self.live)
        bucket = self.by_head.get(hk)
        return bucket.walk(self.live) if bucket else iter(())

    def exact(self, template: Template) -> bool:
        """Does every candidate match (the template is the one or two leading constants its bucket is keyed by)?
        For tuples decoded from msgpack, whose strings are never of a subclass. Asked just before
        :meth:`candidates`: a key filed by its hash (``single``) gives a candidate to check."""
        if template.exact_head == 1:
            return True
        if template.exact_head != 2:
            return False
        h0, h1 = template.head(2)
        head = self.by_head.get((template.size, h0))
        return head is None or h1 in head.second

    def stats(self) -> dict[str, int]:
        return {"shapes": len(self.by_shape), "heads": len(self.by_head)}


def _bucket_of(eid: int) -> Bucket:
    bucket = Bucket()
    bucket.add(eid)
    return bucket


class RindaIndex:
    """Ruby Rinda's TupleBag order (FORMAT.md rules 5-7), for the differential tests."""

    def __init__(self, live: dict) -> None:
        self.live = live
        self.bins: dict[Hashable, list[int]] = {}  # in creation order

    @staticmethod
    def _bin(tup: tuple | dict) -> Hashable:
        head = tup[0] if type(tup) is not dict and tup else None
        return head if type(head) is Symbol else None

    def add(self, eid: int, tup: tuple | dict) -> None:
        self.bins.setdefault(self._bin(tup), []).append(eid)

    def remove(self, eid: int, tup: tuple | dict, taken: bool) -> None:
        key = self._bin(tup)
        ids = self.bins[key]
        ids.remove(eid)
        # Rinda drops a bin only when a take empties it; expiry leaves the empty bin in place.
        if not ids and taken:
            del self.bins[key]

    def candidates(self, template: Template, all_matches: bool) -> Iterator[int]:
        key = self._bin(template.pattern)
        if key is not None:
            ids = self.bins.get(key, [])
            return iter(list(ids) if all_matches else ids[::-1])
        return iter([eid for ids in self.bins.values() for eid in ids])

    def exact(self, template: Template) -> bool:
        return False

    def stats(self) -> dict[str, int]:
        return {"bins": len(self.bins)}
