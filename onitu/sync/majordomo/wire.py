"""Messages between an agent and the majordomo: one msgpack frame each, a list headed by its kind.

The values are packed with the space's codec (:mod:`onitu.space.protocol`), so templates (regexes, types) travel
as they do to the space itself. Agent to majordomo:

- ``["hello", {"version", "services": {service: {folder: path}}}]``, then ``["ping"]`` every second;
- ``["call", rid, op, args]``: a space operation (write, take, read, read_all, batch) of one of its plugs;
- ``["notify", nid, events, template]`` / ``["unnotify", nid]``: a notify stream;
- ``["fetch", rid, service, path, offset, length]``: a chunk of a file of another service;
- ``["served", tag, ok, body]``: the answer to a ``serve``;
- ``["ack", n]``: the bytes received on this connection so far (as :func:`cost` counts them), sent once
  :data:`ACK_EVERY` more have arrived and with every ping. The majordomo relays no more chunks to an agent whose
  unacknowledged bytes pass what it may have asked for, and drops one that stops acknowledging: an agent that
  does not read cannot make the hub queue more than that for it.

Majordomo to agent: ``["welcome", info]``, ``["refused", why]``, ``["revoked", why]``, ``["pong"]``,
``["result", rid, ok, body]`` (on failure ``body`` is ``[error code, message]``), ``["event", nid, id, kind,
tuple]``, ``["lost", nid, code, message]`` (the stream ended), ``["fetched", rid, ok, data or error]``,
``["serve", tag, service, path, offset, length]`` (a chunk of one of the agent's files, for a plug elsewhere).
"""

from __future__ import annotations

from typing import Any

from onitu.space.errors import ERRORS, ProtocolError, SpaceError
from onitu.space.protocol import packb, unpackb

VERSION = 2
PING_EVERY = 1.0  # seconds between an agent's pings
SILENCE = 5.0  # seconds without a frame after which either side takes the connection for dead
MAX_FRAME = 4 * 1024 * 1024  # above a chunk (1 MiB) with room for its envelope
ACK_EVERY = 256 * 1024  # bytes an agent receives between two acks (a chunk is acknowledged as it arrives)
FRAME_COST = 64  # bytes counted per frame on top of its length: a queued message's own bookkeeping

KINDS_FROM_AGENT = {"hello": 2, "ping": 1, "call": 4, "notify": 4, "unnotify": 2, "fetch": 6, "served": 4, "ack": 2}


def cost(frame: bytes) -> int:
    """What a frame counts for in the acknowledged bytes (its length and its queue entry)."""
    return len(frame) + FRAME_COST


def pack(*parts: Any) -> bytes:
    """One message."""
    return packb(list(parts))


def unpack(frame: bytes, kinds: dict[str, int] | None = None) -> list[Any]:
    """A message, checked for its kind and length when ``kinds`` is given; ProtocolError otherwise."""
    msg = unpackb(frame)
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
        raise ProtocolError("a message is a list headed by its kind")
    if kinds is not None and kinds.get(msg[0]) != len(msg):
        raise ProtocolError(f"unknown message {msg[0]!r:.40} or wrong length {len(msg)}")
    return msg


def error_body(exc: BaseException) -> list[str]:
    """``[code, message]`` of a failure, as the space reports them."""
    return [exc.code if isinstance(exc, SpaceError) else "error", str(exc)]


def error_of(body: Any) -> SpaceError:
    """The exception of an error body."""
    if isinstance(body, list) and len(body) == 2 and isinstance(body[0], str):
        return ERRORS.get(body[0], SpaceError)(str(body[1]))
    return ProtocolError(f"malformed error {body!r:.100}")
