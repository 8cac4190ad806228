"""The referee's view of the plugs: which are live, and which of their listings arrived."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from onitu.sync.drivers.contract import ancestors

NOT_RUNNING = "its plug is not running"
NOT_STARTED = "its plug has not started yet"  # since the referee started: shown as starting, not as a failure


@dataclass
class Plugs:
    """The live plugs, and which of their listings arrived."""

    info: dict[str, dict[str, Any]] = field(default_factory=dict)  # service -> plug tuple info
    scanned: set[tuple[str, str, str]] = field(default_factory=set)  # (service, folder, plug id)
    staging: dict[tuple[str, str], tuple[str, set[str]]] = field(default_factory=dict)  # listings: paths seen
    last_seq: dict[str, int] = field(default_factory=dict)  # plug id -> last applied sequence number
    missing: dict[str, float] = field(default_factory=dict)  # service -> since when it has no available plug
    seen: set[str] = field(default_factory=set)  # services that had a plug since the referee started

    def absent(self, services: Iterable[str], seconds: float) -> set[str]:
        """Of ``services``, those without an available plug for ``seconds`` at least (as :attr:`info` says, and said
        at each call before): a plug being restarted, or a failover of the space, is not an absence."""
        now = time.monotonic()
        self.missing = {s: self.missing.get(s, now) for s in services if not self.info.get(s, {}).get("available")}
        return {s for s, since in self.missing.items() if now - since >= seconds}

    def state(self, service: str, folder: str) -> str | None:
        """None when the replica can take part; "wait" while its listing is due; else why it cannot."""
        info = self.info.get(service)
        if info is None:
            return NOT_RUNNING if service in self.seen else NOT_STARTED
        if not info.get("available"):
            return str(info.get("reason") or "unavailable")
        return None if (service, folder, info.get("id")) in self.scanned else "wait"

    def shown(self, folder: str, states: dict[str, str | None]) -> Callable[[str], bool] | None:
        """Which paths of ``folder`` can be decided while the listings of the replicas in ``states`` that "wait" are
        under way: those each of them has shown so far, with their parent directories. What a listing shows is true
        as it arrives; only what it does not show waits for its end. (A first sync of a big folder starts copying
        as the source is listed and hashed, not once all of it is.) None while one of those listings has not begun."""
        shown_by = []
        for service, state in states.items():
            if state != "wait":
                continue
            staged = self.staging.get((service, folder))
            if staged is None or staged[0] != self.info.get(service, {}).get("id"):
                return None
            shown_by.append(staged[1])
        if not shown_by:
            return _everything

        def shown(path: str) -> bool:
            return all(path in seen and all(parent in seen for parent in ancestors(path)) for seen in shown_by)
        return shown


def _everything(path: str) -> bool:
    return True
