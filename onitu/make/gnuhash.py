"""The order GNU make lists files in when it walks its file table: ``rm a.o b.c`` at the end of a build names the
intermediate files in the order of their slots in that hash table (Bob Jenkins' hash of the name, a table of
1,024 slots doubled when 15/16 full, linear probing), not in the order they were made."""

from __future__ import annotations

from collections.abc import Iterable

_MASK = 0xFFFFFFFF
_INIT = 0xDEADBEEF


def _rol(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _MASK; a ^= _rol(c, 4); c = (c + b) & _MASK  # noqa: E702
    b = (b - a) & _MASK; b ^= _rol(a, 6); a = (a + c) & _MASK  # noqa: E702
    c = (c - b) & _MASK; c ^= _rol(b, 8); b = (b + a) & _MASK  # noqa: E702
    a = (a - c) & _MASK; a ^= _rol(c, 16); c = (c + b) & _MASK  # noqa: E702
    b = (b - a) & _MASK; b ^= _rol(a, 19); a = (a + c) & _MASK  # noqa: E702
    c = (c - b) & _MASK; c ^= _rol(b, 4); b = (b + a) & _MASK  # noqa: E702
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol(b, 14)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rol(c, 11)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & _MASK  # noqa: E702
    return c


def _word(chunk: bytes) -> tuple[int, bool]:
    """GNU's sum_up_to_nul on a little-endian machine: what a 4-byte chunk adds, and whether the name ended."""
    val = int.from_bytes(chunk.ljust(4, b"\0"), "little")
    if len(chunk) == 4 and 0 not in chunk:
        return val, False
    if val & 0xFF == 0:
        return 0, True
    if val & 0xFF00 == 0:
        return val & 0xFF, True
    if val & 0xFF0000 == 0:
        return val & 0xFFFF, True
    return val, True


def jhash_string(name: str) -> int:
    """GNU make's jhash_string of ``name``."""
    data = name.encode(errors="surrogateescape")
    a = b = c = _INIT
    pos = 0
    while True:
        add, end = _word(data[pos : pos + 4])
        a = (a + add) & _MASK
        if end:
            break
        pos += 4
        add, end = _word(data[pos : pos + 4])
        b = (b + add) & _MASK
        if end:
            break
        pos += 4
        add, end = _word(data[pos : pos + 4])
        c = (c + add) & _MASK
        if end:
            break
        pos += 4
        a, b, c = _mix(a, b, c)
    return (_final(a, b, c) + pos) & _MASK


def table_order(names: Iterable[str], population: int) -> list[str]:
    """``names`` in the order of their slots in a GNU file table holding ``population`` files in all."""
    size = 1024
    while population >= size - size // 16:
        size *= 2
    slots: dict[int, str] = {}
    for name in names:
        slot = jhash_string(name) & (size - 1)
        while slot in slots:
            slot = (slot + 1) & (size - 1)
        slots[slot] = name
    return [slots[s] for s in sorted(slots)]
