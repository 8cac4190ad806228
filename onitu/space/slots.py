"""A table of entry ids by 30-bit hash, in two arrays: the index's unique keys (see :mod:`onitu.space.index`).

A dict from a hash to an id costs an int object for the hash (32 bytes) and a dict slot (about 50 bytes with room
to grow) per entry: at a hub's hundreds of thousands of paths, more than the index's other bookkeeping together.
:class:`HashSlots` is an open-addressed table (probing as a dict does, at most two thirds full) of the hashes in an
``array('i')`` and the ids in an ``array('q')``: 12 bytes a slot, 18 to 36 per entry. A hash is held once at most.
"""

from __future__ import annotations

from array import array

_EMPTY = -1  # a slot never used (hashes are 0 .. 2**30 - 1)
_GONE = -2  # a slot whose entry was removed: probing goes on past it


class HashSlots:
    """{30-bit hash: entry id}, each hash once."""

    __slots__ = ("filled", "hashes", "ids", "used")

    def __init__(self, capacity: int = 8) -> None:
        self.hashes = array("i", [_EMPTY]) * capacity  # a power of two
        self.ids = array("q", bytes(8 * capacity))
        self.used = 0  # live entries
        self.filled = 0  # live entries and _GONE slots: what probing has to go past

    def __len__(self) -> int:
        return self.used

    def _slot(self, hashed: int) -> int:
        """The slot holding ``hashed``, or -1."""
        hashes, mask = self.hashes, len(self.hashes) - 1
        i, perturb = hashed & mask, hashed
        while True:
            held = hashes[i]
            if held == hashed:
                return i
            if held == _EMPTY:
                return -1
            perturb >>= 5  # CPython's dict probing: keys in sequence (ints) in a row of slots, yet short probes
            i = (i * 5 + perturb + 1) & mask

    def get(self, hashed: int) -> int | None:
        i = self._slot(hashed)
        return None if i < 0 else self.ids[i]

    def add(self, hashed: int, eid: int) -> None:
        """File ``eid`` under ``hashed``, which the table does not hold."""
        if (self.filled + 1) * 3 > len(self.hashes) * 2:
            self._resize()
        hashes, mask = self.hashes, len(self.hashes) - 1
        i, perturb = hashed & mask, hashed
        while hashes[i] >= 0:
            perturb >>= 5
            i = (i * 5 + perturb + 1) & mask
        if hashes[i] == _EMPTY:
            self.filled += 1
        hashes[i] = hashed
        self.ids[i] = eid
        self.used += 1

    def pop(self, hashed: int) -> int:
        """Remove ``hashed`` (KeyError if it is not held) and return its id."""
        i = self._slot(hashed)
        if i < 0:
            raise KeyError(hashed)
        self.hashes[i] = _GONE
        self.used -= 1
        return self.ids[i]

    def _resize(self) -> None:
        """Twice the room for the live entries (or as much, if removals left the slots mostly _GONE)."""
        old = [(h, e) for h, e in zip(self.hashes, self.ids, strict=True) if h >= 0]
        capacity = len(self.hashes)
        while (len(old) + 1) * 2 > capacity:  # at most half full after (a third wasted a doubling, at 87,382)
            capacity *= 2
        self.__init__(capacity)
        for hashed, eid in old:
            self.add(hashed, eid)
