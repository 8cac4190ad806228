"""Wire format: msgpack frames with a protocol version, ext types for the template specials. Never pickle.

Request  ``[VERSION, op, session, seq, ack, args]``: ``session`` is 16 bytes naming the client's session,
``seq`` numbers the client's requests (a retry reuses it), ``ack`` says every cached reply (a mutation's) below it
arrived (the server may forget them: see :mod:`onitu.space.core`), ``args`` is a map.
Reply    ``[VERSION, seq, status, body]``: status OK (body: the result), ERROR (body: ``[code, message]``),
EVENT (an unsolicited notify event, ``seq`` = the notify request's seq, body: ``[event id, kind, tuple]``) or
PART (a piece of a big read_all answer, body: ``[offset, [tuples]]``; the OK that ends it has the count).

Values are msgpack scalars, arrays (decoded as lists, the top level of a tuple as a tuple), maps, and four
ext types: Symbol, Range, regex and type. Anything else is refused with a clear error on both sides.
"""

from __future__ import annotations

import re
import struct
import sys
from typing import Any

import msgpack

from onitu.space import numbers
from onitu.space.errors import ERRORS, InvalidTuple, ProtocolError, SpaceError
from onitu.space.template import TYPE_NAMES, TYPES, Pattern, Range, Symbol, check_tuple

VERSION = 1
OK, ERROR, EVENT, PART = 0, 1, 2, 3
MAX_FRAME = 16 * 1024 * 1024

EXT_SYMBOL, EXT_RANGE, EXT_REGEX, EXT_TYPE = 1, 2, 3, 4
REGEX_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE | re.ASCII


_symbol_exts: dict[str, msgpack.ExtType] = {}  # by name: a str caches its hash, a Symbol computes it in Python


def _default(obj: Any) -> msgpack.ExtType:
    kind = type(obj)
    if kind is Symbol:
        ext = _symbol_exts.get(obj.name)
        if ext is None:
            ext = msgpack.ExtType(EXT_SYMBOL, obj.name.encode())
            if len(_symbol_exts) < 10_000:
                _symbol_exts[obj.name] = ext
        return ext
    if kind is Range:
        return msgpack.ExtType(EXT_RANGE, _pack_inner([obj.lo, obj.hi, obj.exclusive]))
    if kind is Pattern:
        if not isinstance(obj.pattern, str):
            raise InvalidTuple(f"only str regexes can be sent, not {obj!r}")
        return msgpack.ExtType(EXT_REGEX, _pack_inner([obj.pattern, obj.flags & REGEX_FLAGS]))
    if isinstance(obj, type) and obj in TYPE_NAMES:
        return msgpack.ExtType(EXT_TYPE, TYPE_NAMES[obj].encode())
    raise InvalidTuple(f"cannot send a {kind.__name__} value: {obj!r}")


def _pack_inner(obj: Any) -> bytes:
    # An ext payload is packed while the shared packer is mid-message: it needs a packer of its own.
    return msgpack.packb(obj, use_bin_type=True)


_symbols: dict[bytes, Symbol] = {}  # decoded symbol names: most tuples of a space share a few heads


def _ext_hook(code: int, data: bytes) -> Any:
    try:
        if code == EXT_SYMBOL:
            sym = _symbols.get(data)
            if sym is None:
                sym = Symbol(data.decode())
                if len(_symbols) < 10_000:
                    _symbols[data] = sym
            return sym
        if code == EXT_TYPE:
            return TYPES[data.decode()]
        if code == EXT_RANGE:
            lo, hi, exclusive = unpackb(data)
            return Range(lo, hi, exclusive)
        if code == EXT_REGEX:
            source, flags = unpackb(data)
            if type(source) is not str or type(flags) is not int:
                raise TypeError("a regex is [str source, int flags]")
            return re.compile(source, flags & REGEX_FLAGS)
    except (ValueError, TypeError, KeyError, re.error, UnicodeDecodeError, SpaceError) as exc:
        raise InvalidTuple(f"bad ext value (type {code}): {exc}") from exc
    raise InvalidTuple(f"unknown ext type {code}")


_packer = msgpack.Packer(default=_default, use_bin_type=True, strict_types=False)


def packb(obj: Any) -> bytes:
    """Encode a value; raises InvalidTuple for values the protocol cannot carry."""
    try:
        return _packer.pack(obj)
    except (OverflowError, ValueError) as exc:
        _packer.reset()
        raise InvalidTuple(f"cannot encode {obj!r}: {exc}") from exc
    except TypeError as exc:
        _packer.reset()
        raise InvalidTuple(f"cannot encode {obj!r}: {exc}") from exc


def unpackb(data: bytes) -> Any:
    """Decode a value; any malformed input raises ProtocolError (or InvalidTuple for a bad special)."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)
    except SpaceError:
        raise
    except Exception as exc:  # msgpack raises many types on hostile input; all mean "not a valid frame"
        raise ProtocolError(f"malformed msgpack: {type(exc).__name__}: {exc}") from exc


def as_tuple(value: Any) -> tuple | dict:
    """The top level of a decoded tuple; short strings are interned so a million tuples share their heads."""
    if type(value) is list or type(value) is tuple:
        return tuple([sys.intern(x) if type(x) is str and len(x) <= 64 else x for x in value])
    return check_tuple(value)


def unpack_tuple(body: bytes) -> tuple | dict:
    """One tuple of ``read_all(..., packed=True)``, decoded."""
    return as_tuple(unpackb(body))


def as_stored(value: Any) -> tuple | dict:
    """The top level of a decoded tuple that a server stores: not interned, unlike :func:`as_tuple`. A packed store
    keeps the tuple's bytes and, in its index, its first two values (one copy per distinct value): interning would
    only grow the interpreter's table by a slot per unique key (a path), ~50 bytes per file of a sync hub."""
    return tuple(value) if type(value) is list else check_tuple(value)


# ---- messages ----------------------------------------------------------------------------------------------

def request(op: str, session: bytes, seq: int, ack: int, args: dict[str, Any]) -> bytes:
    return packb([VERSION, op, session, seq, ack, args])


def parse_request(frame: bytes) -> tuple[str, bytes, int, int, dict[str, Any]]:
    """Validate a request frame; ProtocolError says exactly what is wrong."""
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME}-byte limit")
    msg = unpackb(frame)
    if not isinstance(msg, list) or len(msg) != 6:
        raise ProtocolError("request must be [version, op, session, seq, ack, args]")
    version, op, session, seq, ack, args = msg
    if version != VERSION:
        raise ProtocolError(f"protocol version {version!r} is not supported (this server speaks {VERSION})")
    if not isinstance(op, str):
        raise ProtocolError(f"op must be a string, not {op!r}")
    if type(session) is not bytes or len(session) != 16:
        raise ProtocolError("session must be 16 bytes")
    for name, n in (("seq", seq), ("ack", ack)):
        try:
            numbers.counter(n, name)
        except InvalidTuple as exc:
            raise ProtocolError(str(exc)) from None
    if not isinstance(args, dict):
        raise ProtocolError("args must be a map")
    return op, session, seq, ack, args


def reply(seq: int, result: Any) -> bytes:
    return packb([VERSION, seq, OK, result])


def _array(items: list[bytes]) -> bytes:
    n = len(items)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n) if n < 65536 else \
        b"\xdd" + struct.pack(">I", n)
    return head + b"".join(items)


def reply_parts(seq: int, offset: int, packed: list[bytes], last: bool) -> list[bytes]:
    """The frames for tuples ``offset...`` of a list answer, each already packed: the whole answer as one OK
    reply when it fits, else a PART (and, after the last, an OK with the count)."""
    if last and offset == 0:
        return [_array([packb(VERSION), packb(seq), packb(OK), _array(packed)])]
    frames = [_array([packb(VERSION), packb(seq), packb(PART), _array([packb(offset), _array(packed)])])]
    if last:
        frames.append(reply(seq, offset + len(packed)))
    return frames


def error_reply(seq: int, exc: SpaceError) -> bytes:
    return packb([VERSION, seq, ERROR, [exc.code, str(exc)]])


def event_message(seq: int, event: tuple[int, str, Any]) -> bytes:
    return packb([VERSION, seq, EVENT, list(event)])


def parse_reply(frame: bytes) -> tuple[int, int, Any]:
    msg = unpackb(frame)
    if not isinstance(msg, list) or len(msg) != 4 or msg[0] != VERSION:
        raise ProtocolError(f"malformed reply from server: {msg!r:.200}")
    return msg[1], msg[2], msg[3]


def error_from(body: Any) -> SpaceError:
    """Rebuild the exception a server reported."""
    if isinstance(body, list) and len(body) == 2:
        cls = ERRORS.get(body[0], SpaceError)
        return cls(body[1])
    return ProtocolError(f"malformed error body {body!r:.200}")
