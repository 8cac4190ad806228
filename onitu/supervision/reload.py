"""A changed ``onitu.yaml``, applied to the running watchdog without a restart.

The watchdog looks at its config file twice a second. A new version that loads is compared with the running one:
agents that are gone are stopped, new ones started, and those whose command changed restarted; a plug when its
service's settings changed, the API when its section changed. The referee keeps running: it watches the file too
and applies new folders, services and rules in place (:meth:`onitu.sync.referee.Referee.reconfigure`), asking
only the new replicas for a listing. The space pair, and every process the change does not concern, keep running.
A version with an error is reported in the watchdog's log and changes nothing; settings that only a restart
applies (data, heartbeat, restart, space) are reported too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from onitu.config import AgentConfig, Config
from onitu.config_watch import ConfigWatch
from onitu.supervision.supervisor import Spec

__all__ = ["Changes", "ConfigWatch", "changes", "spec_of"]


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
    touched = set()  # not the referee: it applies folder, service and rule changes itself (no rescan)
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
