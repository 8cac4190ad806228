"""A packed store's live tuples: entry id -> msgpack bytes, held in arrays and one buffer (:class:`Bodies`).

A dict of bytes costs, per tuple, an int object for the id (32 bytes), a bytes object's header and rounding (about
40) and a slot of the dict with its room to grow (52 to 105): more than a hub's record itself (about 140 bytes,
one per file, in each of the two servers). Here the ids are in one sorted ``array('q')``, each body's place in
the buffer in another (16 bytes a tuple), and the bodies end to end in one ``bytearray``.

- A lookup is a binary search of the ids (``bisect``, in C): about 0.4 µs where a dict takes 0.05, a few per
  request. Ids are given in increasing order, so an insertion is an append (an older id is inserted in place).
- A removal leaves a tombstone in the arrays and the body's bytes unused in the buffer; both are compacted away once
  they are more than a quarter of what is held (in C loops: 20 ms at 100,000 tuples), so a removal costs O(1)
  amortised and the waste stays under a quarter.
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
from bisect import bisect_left
from collections.abc import Iterator, MutableMapping
from itertools import accumulate, chain, compress, islice, repeat
from operator import add, and_, lshift, ne, or_, rshift
from sys import getrefcount
from typing import Any

from onitu.space.fitted import fitted

BIG = 4096  # bytes: a body this long or longer is held as its own object
YOUNG = 1024  # young tuples past which a write moves those nothing else holds to the arrays (at twice as many next)
MOST_YOUNG = 32_768  # young tuples past which the oldest move whatever holds them (the history holds 20,000 events)
_ALONE = 3  # references to a young body held by nothing else, as settle() counts them (dict, loop, argument)
_SHIFT = 12  # a place is offset << _SHIFT | length (a length < BIG)
_LENGTH = BIG - 1
_GONE = -1  # the place of a removed id (a tombstone until the next compaction)
_OWN = -2  # the place of a big body, held in ``_big``
_MISSING = object()
_SLACK = 64  # tombstones or wasted bytes below this count never set off a compaction


class Bodies(MutableMapping[int, bytes]):
    """{entry id: bytes}, iterated in id order. Not thread-safe (nor is the store)."""

    __slots__ = ("_big", "_buffer", "_count", "_dead", "_ids", "_newest", "_next_age", "_places", "_waste", "_young")

    def __init__(self) -> None:
        self._ids = array("q")  # every id older than the young ones, in order
        self._places = array("q")
        self._buffer = bytearray()
        self._big: dict[int, bytes] = {}
        self._young: dict[int, bytes] = {}  # the newest ids, in order
        self._newest = 0  # the newest id ever held
        self._next_age = YOUNG  # young tuples past which a write calls settle()
        self._count = 0  # live ids in the arrays
        self._dead = 0  # tombstones in the arrays
        self._waste = 0  # bytes of the buffer no live id uses

    def __len__(self) -> int:
        return self._count + len(self._young)

    def _find(self, eid: int) -> int:
        """The position of a live id in the arrays, or -1."""
        ids = self._ids
        i = bisect_left(ids, eid)
        return i if i < len(ids) and ids[i] == eid and self._places[i] != _GONE else -1

    def __contains__(self, eid: object) -> bool:
        return eid in self._young or (type(eid) is int and self._find(eid) >= 0)

    def __getitem__(self, eid: int) -> bytes:
        body = self._young.get(eid)
        if body is not None:
            return body
        i = self._find(eid)
        if i < 0:
            raise KeyError(eid)
        return self._body(eid, self._places[i])

    def _body(self, eid: int, place: int) -> bytes:
        if place == _OWN:
            return self._big[eid]
        start = place >> _SHIFT
        return bytes(self._buffer[start:start + (place & _LENGTH)])

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
        ids, places = self._ids, self._places
        i = bisect_left(ids, eid)
        if i < len(ids) and ids[i] == eid:
            if places[i] == _GONE:
                self._count += 1
                self._dead -= 1
            else:
                self._release(eid, places[i])
            places[i] = self._put(eid, body)
        else:
            ids.insert(i, eid)
            places.insert(i, self._put(eid, body))
            self._count += 1

    def settle(self) -> None:
        """Move to the arrays the oldest young tuples that nothing else holds any more: the notify history let their
        write events go, so a copy in the buffer is no longer a second one. O(what moves): a store calls it at the
        end of each turn."""
        count = 0
        for body in self._young.values():
            if getrefcount(body) > _ALONE and len(body) > 1:  # (a bytes of one byte is a shared constant)
                break
            count += 1
        if count:
            self._move(count)

    def _move(self, count: int) -> None:
        """Move the ``count`` oldest young tuples to the arrays (which hold only older ids)."""
        young = self._young
        moved = list(islice(young.items(), count))
        put = self._put
        self._ids.extend(eid for eid, _ in moved)
        self._places.extend(put(eid, body) for eid, body in moved)
        self._count += len(moved)
        for eid, _ in moved:
            del young[eid]

    def _put(self, eid: int, body: bytes) -> int:
        if len(body) >= BIG:
            self._big[eid] = body
            return _OWN
        start = len(self._buffer)
        self._buffer += body
        return start << _SHIFT | len(body)

    def _release(self, eid: int, place: int) -> None:
        if place == _OWN:
            del self._big[eid]
        else:
            self._waste += place & _LENGTH

    def __delitem__(self, eid: int) -> None:
        self.pop(eid)

    def pop(self, eid: int, default: object = _MISSING) -> bytes:  # type: ignore[override]
        body = self._young.pop(eid, None)
        if body is not None:
            return body
        i = self._find(eid) if type(eid) is int else -1
        if i < 0:
            if default is _MISSING:
                raise KeyError(eid)
            return default  # type: ignore[return-value]
        place = self._places[i]
        body = self._body(eid, place)
        self._release(eid, place)
        self._places[i] = _GONE
        self._count -= 1
        self._dead += 1
        if self._dead > max(_SLACK, self._count >> 2) or self._waste > max(_SLACK, len(self._buffer) >> 2):
            self._compact()
        return body
    def _compact(self) -> None:
        """Drop the tombstones and the unused bytes, in C loops (no Python code per tuple)."""
        places = self._places
        alive = list(map(ne, places, repeat(_GONE)))
        ids = array("q", compress(self._ids, alive))
        places = array("q", compress(places, alive))
        packed = list(map(ne, places, repeat(_OWN)))  # places of bodies in the buffer
        held = array("q", compress(places, packed))
        starts = list(map(rshift, held, repeat(_SHIFT)))
        lengths = list(map(and_, held, repeat(_LENGTH)))
        buffer = self._buffer
        self._buffer = bytearray().join(map(buffer.__getitem__, map(slice, starts, map(add, starts, lengths))))
        moved = iter(map(or_, map(lshift, accumulate(lengths, initial=0), repeat(_SHIFT)), lengths))
        self._places = array("q", (next(moved) if in_buffer else _OWN for in_buffer in packed)) if self._big \
            else array("q", moved)
        self._ids, self._dead, self._waste = ids, 0, 0

    def __iter__(self) -> Iterator[int]:
        return chain(compress(self._ids, map(ne, self._places, repeat(_GONE))), list(self._young))

    def items(self) -> Iterator[tuple[int, bytes]]:  # type: ignore[override]
        """(id, body) in id order. As with a dict, the table must not change meanwhile: a snapshot iterates a
        :meth:`copy`."""
        body = self._body
        for eid, place in zip(self._ids, self._places, strict=True):
            if place != _GONE:
                yield eid, body(eid, place)
        yield from self._young.items()

    def copy(self) -> Bodies:
        """An independent copy (C copies of the arrays and the buffer): what a snapshot streams from."""
        other = Bodies()
        other._ids, other._places, other._buffer = array("q", self._ids), array("q", self._places), \
            bytearray(self._buffer)
        other._big, other._young, other._newest = dict(self._big), dict(self._young), self._newest
        other._count, other._dead, other._waste = self._count, self._dead, self._waste
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
