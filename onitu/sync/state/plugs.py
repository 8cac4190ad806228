"""The referee's view of the plugs: which are live, and which of their listings arrived."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Plugs:
    """The live plugs, and which of their listings arrived."""

    info: dict[str, dict[str, Any]] = field(default_factory=dict)  # service -> plug tuple info
    scanned: set[tuple[str, str, str]] = field(default_factory=set)  # (service, folder, plug id)
    staging: dict[tuple[str, str], tuple[str, set[str]]] = field(default_factory=dict)  # listings: paths seen
    last_seq: dict[str, int] = field(default_factory=dict)  # plug id -> last applied sequence number

    def state(self, service: str, folder: str) -> str | None:
        """None when the replica can take part; "wait" while its listing is due; else why it cannot."""
        info = self.info.get(service)
        if info is None:
            return "its plug is not running"
        if not info.get("available"):
            return str(info.get("reason") or "unavailable")
        return None if (service, folder, info.get("id")) in self.scanned else "wait"
