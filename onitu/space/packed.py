"""How a packed store (the server's) holds a tuple: as its msgpack bytes, unless it is big.

A tuple of nested dicts and strings costs several times its encoding as Python objects, and a sync hub keeps one
per file. Only the index keeps decoded values (the first two elements); a candidate is decoded when a template
examines it. The bytes are what the disk and the secondary receive, so a tuple is encoded once. A big tuple (over
:data:`PACKED_MAX` bytes) is held decoded: its overhead is small beside its size, and decoding it at each look
would copy it each time (a read_all of a few hundred MiB would stall the server).
"""

from __future__ import annotations

from typing import Any

from onitu.space.protocol import unpackb
from onitu.space.template import check_tuple

Tuple = tuple | dict

PACKED_MAX = 4096  # bytes: a packed store holds a bigger tuple decoded


def same(tup: Any) -> Any:
    """An unpacked store holds a tuple as given."""
    return tup


def unpack_stored(body: bytes) -> Tuple:
    """A stored tuple from its bytes. Not interned (unlike a request's): the index keeps a few decoded values per
    tuple, mostly unique keys, that an interning table would only make bigger."""
    return check_tuple(unpackb(body))


def unpack_held(held: Any) -> Tuple:
    """A held tuple, decoded."""
    return unpack_stored(held) if type(held) is bytes else held  # a tuple is never bytes


def held(tup: Tuple, body: bytes) -> Any:
    """What a packed store keeps of a tuple: its bytes, unless it is big."""
    return body if len(body) <= PACKED_MAX else tup
