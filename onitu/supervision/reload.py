"""A changed ``onitu.yaml``, applied to the running watchdog without a restart.

The watchdog looks at its config file twice a second. A new version that loads is compared with the running one:
agents that are gone are stopped, new ones started, and those whose command changed restarted; the referee is
restarted when the folders, services or sync settings changed (it re-reads the rules and asks every plug for a
listing), a plug when its service's settings changed, the API when its section changed. The space pair, and
every process the change does not concern, keep running. A version with an error is reported in the watchdog's
log and changes nothing; settings that only a restart applies (data, heartbeat, restart, space) are reported too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from onitu.config import AgentConfig, Config, ConfigError, load
from onitu.supervision.supervisor import Spec

log = logging.getLogger("onitu.supervision")

EVERY = 0.5  # seconds between two looks at the file
NOT_LIVE = ("data", "heartbeat", "restart", "space")  # sections that only a restart of Onitu applies


def spec_of(agent: AgentConfig) -> Spec:
    return Spec(agent.name, agent.command, heartbeat=agent.heartbeat, env=agent.env, cwd=agent.cwd)


@dataclass
class Changes:
    """What applying a new config means for the agents."""

    stop: list[str] = field(default_factory=list)  # names, to stop and forget
    start: list[Spec] = field(default_factory=list)  # to add and start (after the stops: a restart is both)


def changes(old: Config, new: Config) -> Changes:
    """The agents to stop and to start to go from ``old`` to ``new``."""
    before = {a.name: spec_of(a) for a in old.all_agents()}
    after = {a.name: spec_of(a) for a in new.all_agents()}
    touched = set()
    if (old.folders, old.services, old.sync) != (new.folders, new.services, new.sync):
        touched.add("referee")
    for name in set(old.services) & set(new.services):
        if old.services[name] != new.services[name] or old.sync != new.sync:
            touched.add(f"plug-{name}")
    if old.api != new.api:
        touched.add("api")
    if (old.majordomo, old.folders, old.services) != (new.majordomo, new.folders, new.services):
        touched.add("majordomo")  # its grants, and the folders and service names it checks agents against
    found = Changes()
    for name, spec in before.items():
        if name not in after or after[name] != spec or name in touched:
            found.stop.append(name)
    for name, spec in after.items():
        if name not in before or before[name] != spec or name in touched:
            found.start.append(spec)
    return found


class ConfigWatch:
    """Notices when the config file changes; :meth:`poll` gives the new config once (None meanwhile)."""

    def __init__(self, config: Config) -> None:
        self.path: Path | None = config.source
        self.config = config
        self._stamp = self._stat()
        self._next = 0.0

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat() if self.path else None
        except OSError:
            return None
        return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)

    def poll(self) -> Config | None:
        now = time.monotonic()
        if self.path is None or now < self._next:
            return None
        self._next = now + EVERY
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            new = load(self.path)
        except ConfigError as exc:
            log.error("the changed config cannot be used (nothing applied): %s", exc)
            return None
        for section in NOT_LIVE:
            if getattr(new, section) != getattr(self.config, section):
                log.warning("%s: the %s section changed: restart Onitu to apply it", self.path, section)
        self.config = new
        return new
