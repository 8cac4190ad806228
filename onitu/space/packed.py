"""How a packed store (the server's) holds a tuple: as its msgpack bytes.

A tuple of nested dicts and strings costs several times its encoding as Python objects, and a sync hub keeps one
per file. Only the index keeps decoded values (the first two elements); a candidate is decoded when a template
examines it. The bytes are what the disk and the secondary receive, so a tuple is encoded once. Big tuples too: they
were held decoded, to spare a decoding at each look, but a big tuple of the hub is a plug's report or result of a
thousand small entries, four times its bytes once decoded (a report of 142 KB took 559 KB), and a hub restarted
at 100,000 files held hundreds of them at once: 422 MiB in the primary against 248 MiB held packed. Most looks at
them are a take in the order they came, one decoding each, where a reply used to encode them anyway.
"""

from __future__ import annotations

from typing import Any

from onitu.space.protocol import unpackb
from onitu.space.template import check_tuple

Tuple = tuple | dict


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

