"""What an admitted agent may ask of the space and of other services, checked request by request.

An agent's plugs get the space operations an ordinary plug uses, on their own services only: register their plug
tuple (always session-leased, and rewritten by the majordomo so its endpoint is the relay's), mark their root
known, report (only about folders granted to the key) and see which of their reports still wait, publish (and
replace) their transfers under way and skipped paths, read and take their orders. They may read the plug tuples of
the services sharing a granted folder (their folders limited to those, their endpoints hidden), and fetch chunks
only of files under such a folder, and only when the key may receive. Anything else is refused with
:class:`onitu.space.errors.Refused` naming the agent and what it asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from onitu.space.errors import Refused
from onitu.sync import tuples
from onitu.sync.drivers.contract import CHUNK, is_under, safe_path

ORDERS = r"^sync\.(order|rescan)$"  # the pattern of a plug's order stream (onitu.sync.plug.orders)
LEASE_MAX = 60.0  # seconds: the longest lease an agent may ask for a progress tuple
_WRITES = {tuples.KNOWN: 2, tuples.PLUG: 3, tuples.PROGRESS: 3, tuples.SKIPPED: 3, tuples.REPORT: 5, tuples.DONE: 5}
_LEASED = (tuples.PROGRESS, tuples.SKIPPED)  # what a plug publishes and replaces: its transfers, its skipped paths


@dataclass
class Grant:
    """One admitted agent: its key's name, its services' folders (folder -> path under the service's root) and
    whether it may receive (key mode ``r`` or ``rw``)."""

    agent: str
    services: dict[str, dict[str, str]]
    receives: bool
    folders: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.folders = {f for folders in self.services.values() for f in folders}

    def refuse(self, what: str) -> Refused:
        return Refused(f"agent {self.agent}: {what}")

    def _own(self, service: Any, what: str) -> str:
        if service not in self.services:
            raise self.refuse(f"{what} of {service!r:.60}, not one of its services ({', '.join(self.services)})")
        return service

    # -- space operations ---------------------------------------------------------------------------------------

    def check_write(self, tup: Any, lease: Any) -> tuple[Any, Any]:
        """The tuple and lease to write for the agent (a plug tuple's lease is always its session)."""
        if not isinstance(tup, list | tuple) or not tup or _WRITES.get(tup[0]) != len(tup):
            raise self.refuse(f"may not write {str(tup)[:80]}")
        self._own(tup[1], f"write of a {tup[0]} tuple")
        if tup[0] in (tuples.REPORT, tuples.DONE):
            body = tup[4]
            folder = body.get("folder") if isinstance(body, dict) else None
            if folder not in self.services[tup[1]]:
                raise self.refuse(f"{tup[0]} about folder {folder!r:.60}, not granted to {tup[1]}")
        if tup[0] == tuples.PLUG:
            return tup, "session"
        if tup[0] in _LEASED:
            if not (isinstance(lease, int | float) and 0 < lease <= LEASE_MAX):
                raise self.refuse(f"a {tup[0]} tuple needs a lease of at most a minute")
            return tup, lease
        return tup, None if tup[0] == tuples.KNOWN else lease

    def check_template(self, op: str, template: Any) -> None:
        """May the agent read (or take, for ``op`` take) what ``template`` matches?"""
        if not isinstance(template, list | tuple) or len(template) < 2:
            raise self.refuse(f"{op} of {str(template)[:80]}")
        head, service = template[0], template[1]
        if isinstance(head, re.Pattern) and head.pattern == ORDERS and len(template) == 4:
            self._own(service, f"{op} of orders")
        elif head in (tuples.ORDER, tuples.RESCAN) and op == "take" and len(template) == 4:
            self._own(service, "take of an order")
        elif head in _LEASED and op in ("read_all", "take") and len(template) == 3:
            self._own(service, f"{op} of a {head} tuple")
        elif head == tuples.REPORT and op == "read_all" and len(template) == 5:  # how far the referee has read
            self._own(service, f"{op} of its reports")
        elif head == tuples.KNOWN and op != "take" and len(template) == 2:
            self._own(service, f"{op} of a known marker")
        elif head == tuples.PLUG and len(template) == 3:
            if not (op == "read_all" and (service is None or isinstance(service, str))):  # sources: shown_plug
                self._own(service, f"{op} of a plug tuple")
        else:
            raise self.refuse(f"may not {op} {str(template)[:80]}")

    def shown_plug(self, service: str, info: dict[str, Any], folders: dict[str, str]) -> dict[str, Any] | None:
        """What the agent sees of a plug tuple: the folders it shares with it, no endpoint, key or secret (its
        chunks come through the majordomo); None for a service it shares nothing with."""
        shared = {f: p for f, p in folders.items() if f in self.folders}
        if not shared and service not in self.services:
            return None
        return {"id": info.get("id"), "available": bool(info.get("available")), "reason": info.get("reason"),
                "folders": shared, "endpoint": "", "key": "", "secret": ""}

    # -- chunks -------------------------------------------------------------------------------------------------

    def check_fetch(self, service: str, folders: dict[str, str], path: Any, offset: Any, length: Any) -> str:
        """The path of a chunk the agent may fetch from ``service`` (whose folders are ``folders``)."""
        if not self.receives:
            raise self.refuse("its key may not receive files (mode w)")
        if not (type(offset) is int and type(length) is int and offset >= 0 and 0 < length <= CHUNK):
            raise self.refuse("malformed chunk request")
        try:
            path = safe_path(path)
        except ValueError as exc:
            raise self.refuse(f"fetch of a bad path: {exc}") from None
        if not any(is_under(path, top) for f, top in folders.items() if f in self.folders):
            raise self.refuse(f"fetch of {path!r:.80} from {service}, outside the folders granted")
        return path
