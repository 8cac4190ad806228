"""What each client key may hold in the space: tuples, bytes, sessions, blocked requests.

Clients are known by their CURVE key (the request's ``User-Id``); every client of a plain endpoint (``ipc://``,
or tcp with ``--insecure-loopback``) is :data:`LOCAL`, a process of this host that could as well open the data
directory. Sessions and blocked requests (waiting take/read and notify subscriptions) are counted for every key;
tuples and their bytes for remote keys only, so that the local clients, which hold the millions of tuples, pay
no bookkeeping per tuple. The counts are of this server's lifetime: after a restart, tuples loaded from disk are
nobody's until taken.

Defaults are generous but finite (:data:`DEFAULTS`); ``keys/limits.json`` changes them, for every key
(``"*"``) or one key by name (``{"friend": {"tuples": 1000}}``), and is read again with the authorized keys.
A request that would go over a limit is refused with :class:`~onitu.space.errors.LimitExceeded`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from onitu.space.errors import LimitExceeded

log = logging.getLogger("onitu.space.limits")

LOCAL = ""
KINDS = ("tuples", "bytes", "sessions", "blocked")
DEFAULTS = {"tuples": 10_000_000, "bytes": 4 << 30, "sessions": 1000, "blocked": 100_000}
WHAT = {"tuples": "live tuples", "bytes": "bytes of live tuples", "sessions": "open sessions",
        "blocked": "blocked requests and notifies"}


class Limits:
    """Per-key counts and the limits they are held to."""

    def __init__(self, defaults: dict[str, int] | None = None) -> None:
        self.defaults = {**DEFAULTS, **(defaults or {})}
        self.by_name: dict[str, dict[str, int]] = {}
        self.used: dict[str, Counter[str]] = {}
        self.tuple_key: dict[int, tuple[str, int]] = {}  # entry id -> (key, bytes), remote keys' tuples only
        self.session_key: dict[bytes, str] = {}

    def load(self, path: Path) -> None:
        """Read ``limits.json`` (``{"*" or key name: {kind: number}}``); a bad file is reported and ignored."""
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
            table = {name: _entry(name, entry) for name, entry in data.items()}
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", path, exc)
            return
        self.defaults = {**DEFAULTS, **table.pop("*", {})}
        self.by_name = table

    def limit(self, name: str, kind: str) -> int:
        return self.by_name.get(name, {}).get(kind, self.defaults[kind])

    def check(self, key: str, name: str, kind: str, more: int = 1) -> None:
        """Refuse ``more`` of ``kind`` for this key if that goes over its limit."""
        used = self.used.get(key)
        have = used[kind] if used is not None else 0
        limit = self.limit(name, kind)
        if have + more > limit:
            who = "local clients" if key == LOCAL else f"client key {name}"
            raise LimitExceeded(f"{who} would hold {have + more} {WHAT[kind]}, over the limit of {limit}; "
                                f"free some (take or cancel), or raise '{kind}' for it in limits.json")

    def add(self, key: str, kind: str, n: int) -> None:
        used = self.used.get(key)
        if used is None:
            used = self.used[key] = Counter()
        used[kind] += n

    # ---- what changes the counts ---------------------------------------------------------------------------

    def stored(self, key: str, eid: int, size: int) -> None:
        self.tuple_key[eid] = (key, size)
        self.add(key, "tuples", 1)
        self.add(key, "bytes", size)

    def removed(self, eid: int) -> None:
        held = self.tuple_key.pop(eid, None)
        if held is not None:
            self.add(held[0], "tuples", -1)
            self.add(held[0], "bytes", -held[1])

    def opened(self, key: str, sid: bytes) -> None:
        if sid not in self.session_key:
            self.session_key[sid] = key
            self.add(key, "sessions", 1)

    def ended(self, sid: bytes) -> None:
        key = self.session_key.pop(sid, None)
        if key is not None:
            self.add(key, "sessions", -1)

    def sessions_of(self, key: str) -> list[bytes]:
        return [sid for sid, k in self.session_key.items() if k == key]

    def stats(self) -> dict[str, dict[str, int]]:
        return {key or "local": dict(used) for key, used in self.used.items()}


def _entry(name: str, entry: Any) -> dict[str, int]:
    if not isinstance(entry, dict):
        raise ValueError(f"{name!r}: expected a map of limits")
    for kind, value in entry.items():
        if kind not in KINDS or type(value) is not int or value < 0:
            raise ValueError(f"{name!r}: {kind!r} must be one of {KINDS} with an int >= 0, not {value!r}")
    return entry
