"""Every number a request carries, checked in one place before anything uses it.

A number on the wire is hostile: NaN compares false with everything (a NaN timeout never expires and, as a
timer deadline, disorders the heap every other timer waits in), an infinity or a huge value overflows what
SQLite or the event loop accept, a negative id or sequence number means nothing. Each argument of each operation
is of one kind below; :func:`check_args` checks them all against the operation's table entry
(:data:`onitu.space.ops.OPERATIONS`), the request header's ``seq`` and ``ack`` are checked as
counters when the frame is parsed, and the in-process space checks its arguments with the same
functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from onitu.space.errors import InvalidTuple

MAX_SECONDS = 100_000_000.0  # ~3 years: the longest timeout or lease; beyond, use None (forever)
MAX_COUNTER = 2**63 - 1  # ids, sequence numbers, event ids: SQLite's INTEGER
TTL_RANGE = (0.2, 3600.0)  # seconds a session may go without a keepalive


def _real(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def seconds(value: Any, name: str, lo: float = 0.0, hi: float = MAX_SECONDS) -> float:
    """A finite number of seconds in [lo, hi]."""
    if not _real(value) or not lo <= value <= hi:
        raise InvalidTuple(f"{name} must be seconds in [{lo:g}, {hi:g}], not {value!r}")
    return float(value)


def timeout(value: Any, name: str = "timeout") -> float | None:
    """None (wait forever) or seconds."""
    return None if value is None else seconds(value, name)


def lease(value: Any, name: str = "lease") -> float | str | None:
    """None (forever), ``"session"`` (as long as the writer's session) or seconds."""
    if value is None or value == "session":
        return value
    if type(value) is not str:
        return seconds(value, name)
    raise InvalidTuple(f"{name} must be None, 'session' or seconds, not {value!r}")


def counter(value: Any, name: str) -> int:
    """An id, sequence number or count: an int in [0, 2**63)."""
    if type(value) is not int or not 0 <= value <= MAX_COUNTER:
        raise InvalidTuple(f"{name} must be an int in [0, 2**63), not {value!r}")
    return value


def optional_counter(value: Any, name: str) -> int | None:
    return None if value is None else counter(value, name)


def ttl(value: Any, name: str = "ttl") -> float:
    return seconds(value, f"session {name}", *TTL_RANGE)


def batch_leases(ops: Any, name: str = "ops") -> None:
    """The lease of each write in a batch (the ops' shapes are checked with them)."""
    if isinstance(ops, list):
        for i, op in enumerate(ops):
            if isinstance(op, list) and len(op) == 3 and op[0] == "write":
                lease(op[2], f"{name}[{i}] lease")


Kind = Callable[[Any, str], Any]


def check_args(op: str, args: Mapping[str, Any], kinds: Mapping[str, Kind]) -> None:
    """Check each numeric argument ``args`` has against its kind; a missing one means its default."""
    for name, kind in kinds.items():
        if name in args:
            kind(args[name], f"{op} {name}")

