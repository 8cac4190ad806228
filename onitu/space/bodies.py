"""A packed store's live tuples: entry id -> msgpack bytes, held in arrays and one buffer (:class:`Bodies`).

A dict of bytes costs, per tuple, an int object for the id (32 bytes), a bytes object's header and rounding (about
40) and a slot of the dict with its room to grow (52 to 105): more than a hub's record itself (about 140 bytes,
one per file, in each of the two servers). Here the ids are in sorted ``array('q')``, each body's place in a buffer
in another (16 bytes a tuple), and the bodies end to end in a ``bytearray``: one of each per *segment* of up to
:data:`SEGMENT` ids in a row.

- A lookup is a binary search of the segments' first ids, then of the segment's ids (``bisect``, in C): about 0.5
  µs where a dict takes 0.05, a few per request. Ids are given in increasing order, so an insertion is an append to
  the last segment (an older id is inserted in place).
- A removal leaves a tombstone in its segment's arrays and the body's bytes unused in its buffer; both are
  compacted away once they are more than a quarter of what the segment holds (in C loops), so a removal costs O(1)
  amortised and the waste stays under a quarter. A compaction walks one segment: the server's loop stops for 30 to
  60 ms, whatever the size of the space (one buffer for a million tuples took 1 to 2 s, long enough for the
  watchdog to notice).
- A body of :data:`BIG` bytes or more (a plug's report of a thousand entries, written then soon taken) is kept as
  its own object: copying it into the buffer and out again, then compacting it away, is work for nothing.
- The newest tuples are held as given, in a dict ("young"), for as long as something else holds their bytes too:
  the notify history holds each write event's body, and a copy in the buffer would be a second one (20,000 events,
  3.8 MB in each server). Most of a hub's tuples that are taken at all are taken young (orders, results, reports):
  they never make waste in the buffer, and the body a take returns is the very object the write gave (the history
  holds it for both events). :meth:`settle` moves the oldest young tuples nothing else holds to the arrays.
- A read of an older tuple returns a new ``bytes`` (a copy of 150 bytes): the buffer is never lent out, so it can
  grow and move.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, MutableMapping
from itertools import accumulate, chain, compress, islice, repeat
from operator import add, and_, lshift, ne, or_, rshift
from sys import getrefcount
from typing import Any

from onitu.space.fitted import fitted

BIG = 4096  # bytes: a body this long or longer is held as its own object
SEGMENT = 32_768  # ids a segment takes before the next one starts
YOUNG = 1024  # young tuples past which a write moves those nothing else holds to the arrays (at twice as many next)
MOST_YOUNG = 32_768  # young tuples past which the oldest move whatever holds them (the history holds 20,000 events)
_ALONE = 3  # references to a young body held by nothing else, as settle() counts them (dict, loop, argument)
_SHIFT = 12  # a place is offset << _SHIFT | length (a length < BIG)
_LENGTH = BIG - 1
_GONE = -1  # the place of a removed id (a tombstone until the next compaction)
_OWN = -2  # the place of a big body, held in ``Bodies._big``
_MISSING = object()
_SLACK = 64  # tombstones or wasted bytes below this count never set off a compaction


class _Segment:
    """Ids in order, each one's place, and the buffer: the ids from the segment's first id on, up to the next
    segment's."""

    __slots__ = ("buffer", "count", "dead", "ids", "places", "waste")

    def __init__(self) -> None:
        self.ids, self.places, self.buffer = array("q"), array("q"), bytearray()
        self.count = 0  # live ids
        self.dead = 0  # tombstones
        self.waste = 0  # bytes of the buffer no live id uses

    def find(self, eid: int) -> int:
        """The position of a live id, or -1."""
        ids = self.ids
        i = bisect_left(ids, eid)
        return i if i < len(ids) and ids[i] == eid and self.places[i] != _GONE else -1

    def body(self, eid: int, place: int, big: dict[int, bytes]) -> bytes:
        if place == _OWN:
            return big[eid]
        start = place >> _SHIFT
        return bytes(self.buffer[start:start + (place & _LENGTH)])

    def put(self, eid: int, body: bytes, big: dict[int, bytes]) -> int:
        """Where ``body`` goes: the end of the buffer, or ``big``."""
        if len(body) >= BIG:
            big[eid] = body
            return _OWN
        start = len(self.buffer)
        self.buffer += body
        return start << _SHIFT | len(body)

    def set(self, eid: int, body: bytes, big: dict[int, bytes]) -> bool:
        """Hold ``body`` under ``eid`` (in place if the id is held, or was); True if the id was not live."""
        ids, places = self.ids, self.places
        i = bisect_left(ids, eid)
        if i < len(ids) and ids[i] == eid:
            new = places[i] == _GONE
            if new:
                self.dead -= 1
            else:
                self.release(eid, places[i], big)
            places[i] = self.put(eid, body, big)
        else:
            new = True
            ids.insert(i, eid)
            places.insert(i, self.put(eid, body, big))
        self.count += new
        return new

    def release(self, eid: int, place: int, big: dict[int, bytes]) -> None:
        if place == _OWN:
            del big[eid]
        else:
            self.waste += place & _LENGTH

    def remove(self, i: int, eid: int, big: dict[int, bytes]) -> bytes:
        """Take the body of the live id at position ``i``."""
        place = self.places[i]
        body = self.body(eid, place, big)
        self.release(eid, place, big)
        self.places[i] = _GONE
        self.count -= 1
        self.dead += 1
        if self.dead > max(_SLACK, self.count >> 2) or self.waste > max(_SLACK, len(self.buffer) >> 2):
            self.compact(bool(big))
        return body

    def compact(self, any_big: bool) -> None:
        """Drop the tombstones and the unused bytes, in C loops (no Python code per tuple)."""
        places = self.places
        alive = list(map(ne, places, repeat(_GONE)))
        ids = array("q", compress(self.ids, alive))
        places = array("q", compress(places, alive))
        packed = list(map(ne, places, repeat(_OWN)))  # places of bodies in the buffer
        held = array("q", compress(places, packed))
        starts = list(map(rshift, held, repeat(_SHIFT)))
        lengths = list(map(and_, held, repeat(_LENGTH)))
        buffer = self.buffer
        self.buffer = bytearray().join(map(buffer.__getitem__, map(slice, starts, map(add, starts, lengths))))
        moved = iter(map(or_, map(lshift, accumulate(lengths, initial=0), repeat(_SHIFT)), lengths))
        self.places = array("q", (next(moved) if in_buffer else _OWN for in_buffer in packed)) if any_big \
            else array("q", moved)
        self.ids, self.dead, self.waste = ids, 0, 0

    def live_ids(self) -> Iterator[int]:
        return compress(self.ids, map(ne, self.places, repeat(_GONE)))

    def items(self, big: dict[int, bytes]) -> Iterator[tuple[int, bytes]]:
        body = self.body
        for eid, place in zip(self.ids, self.places, strict=True):
            if place != _GONE:
                yield eid, body(eid, place, big)

    def copy(self) -> _Segment:
        other = _Segment()
        other.ids, other.places, other.buffer = array("q", self.ids), array("q", self.places), bytearray(self.buffer)
        other.count, other.dead, other.waste = self.count, self.dead, self.waste
        return other


class Bodies(MutableMapping[int, bytes]):
    """{entry id: bytes}, iterated in id order. Not thread-safe (nor is the store)."""

    __slots__ = ("_big", "_count", "_firsts", "_newest", "_next_age", "_segments", "_young")

    def __init__(self) -> None:
        self._segments: list[_Segment] = []  # every id older than the young ones
        self._firsts: list[int] = []  # each segment's first id: it holds ids from there to the next one's
        self._big: dict[int, bytes] = {}
        self._young: dict[int, bytes] = {}  # the newest ids, in order
        self._newest = 0  # the newest id ever held
        self._next_age = YOUNG  # young tuples past which a write calls settle()
        self._count = 0  # live ids in the segments

    def __len__(self) -> int:
        return self._count + len(self._young)

    def _segment(self, eid: int) -> _Segment | None:
        k = bisect_right(self._firsts, eid) - 1
        return self._segments[k] if k >= 0 else None

    def __contains__(self, eid: object) -> bool:
        if eid in self._young:
            return True
        segment = self._segment(eid) if type(eid) is int else None
        return segment is not None and segment.find(eid) >= 0  # type: ignore[arg-type]

    def __getitem__(self, eid: int) -> bytes:
        body = self._young.get(eid)
        if body is not None:
            return body
        segment = self._segment(eid)
        i = -1 if segment is None else segment.find(eid)
        if i < 0:
            raise KeyError(eid)
        return segment.body(eid, segment.places[i], self._big)  # type: ignore[union-attr]

    def __setitem__(self, eid: int, body: bytes) -> None:
        if type(body) is not bytes:
            raise TypeError(f"entry {eid}: a packed store holds bytes, not {type(body).__name__}")
        young = self._young
        if eid > self._newest or eid in young:
            young[eid] = body
            self._newest = max(self._newest, eid)
            if len(young) > self._next_age:
                self.settle()
                if len(young) > MOST_YOUNG:  # something holds the oldest of them: they go all the same
                    self._move(len(young) - MOST_YOUNG // 2)
                self._next_age = min(max(YOUNG, 2 * len(young)), MOST_YOUNG)
            return
        self._move(len(young))  # an id older than the newest (only an odd caller's: a primary's rows are in order)
        segment = self._segment(eid)
        if segment is None:  # older than every segment: the first one starts at it
            if not self._segments:
                self._segments.append(_Segment())
                self._firsts.append(eid)
            segment, self._firsts[0] = self._segments[0], eid
        self._count += segment.set(eid, body, self._big)

    def settle(self) -> None:
        """Move to the segments the oldest young tuples that nothing else holds any more: the notify history let
        their write events go, so a copy in a buffer is no longer a second one. O(what moves): a store calls it at
        the end of each turn."""
        count = 0
        for body in self._young.values():
            if getrefcount(body) > _ALONE and len(body) > 1:  # (a bytes of one byte is a shared constant)
                break
            count += 1
        if count:
            self._move(count)

    def _move(self, count: int) -> None:
        """Move the ``count`` oldest young tuples to the last segment (they are newer than any there)."""
        young, big = self._young, self._big
        moved = list(islice(young.items(), count))
        segment = self._segments[-1] if self._segments else None
        for eid, body in moved:
            if segment is None or len(segment.ids) >= SEGMENT:
                segment = _Segment()
                self._segments.append(segment)
                self._firsts.append(eid)
            segment.ids.append(eid)
            segment.places.append(segment.put(eid, body, big))
            segment.count += 1
            del young[eid]
        self._count += len(moved)

    def __delitem__(self, eid: int) -> None:
        self.pop(eid)

    def pop(self, eid: int, default: object = _MISSING) -> bytes:  # type: ignore[override]
        body = self._young.pop(eid, None)
        if body is not None:
            return body
        segment = self._segment(eid) if type(eid) is int else None
        i = -1 if segment is None else segment.find(eid)
        if i < 0:
            if default is _MISSING:
                raise KeyError(eid)
            return default  # type: ignore[return-value]
        body = segment.remove(i, eid, self._big)  # type: ignore[union-attr]
        self._count -= 1
        if not segment.count and segment is not self._segments[-1]:  # type: ignore[union-attr]
            k = self._segments.index(segment)  # type: ignore[arg-type]
            del self._segments[k], self._firsts[k]  # its ids' range goes to the segment before
        return body

    def __iter__(self) -> Iterator[int]:
        return chain(*(segment.live_ids() for segment in self._segments), list(self._young))

    def items(self) -> Iterator[tuple[int, bytes]]:  # type: ignore[override]
        """(id, body) in id order. As with a dict, the table must not change meanwhile: a snapshot iterates a
        :meth:`copy`."""
        for segment in self._segments:
            yield from segment.items(self._big)
        yield from self._young.items()

    def copy(self) -> Bodies:
        """An independent copy (C copies of the arrays and the buffers): what a snapshot streams from."""
        other = Bodies()
        other._segments, other._firsts = [segment.copy() for segment in self._segments], list(self._firsts)
        other._big, other._young, other._newest = dict(self._big), dict(self._young), self._newest
        other._count = self._count
        return other

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


def fit(table: MutableMapping[int, Any]) -> MutableMapping[int, Any]:
    """A store's live table between turns: ``table`` settled (a :class:`Bodies`), or a dict sized for what it holds
    (an unpacked store's, see :func:`onitu.space.fitted.fitted`)."""
    if type(table) is Bodies:
        table.settle()
        return table
    return fitted(table)  # type: ignore[arg-type]
