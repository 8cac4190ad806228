"""The referee: decides, per folder and rule, which services must hold which file (``python -m onitu.sync.referee``).

It reads what the plugs report (each replica's current entries, in the order each plug saw them: a compact mirror of
them, :mod:`onitu.sync.state.replicas`), runs :func:`onitu.sync.decide.reconcile.reconcile` over the paths that
changed, in passes of bounded size (:mod:`onitu.sync.decide.split_passes`), and writes the outcome to the space with
the ledger (:mod:`onitu.sync.state.ledger`): the new agreed versions, what each replica now holds, the orders (up to
64 actions for one plug in each, :mod:`onitu.sync.state.orders`), the conflict records and the deletions held for
approval (:mod:`onitu.sync.state.awaiting`), each order in the same atomic batch as the records of its paths. When a
plug reports an order done, the versions its replica now holds are recorded.

A replica takes part in a decision only when its plug is alive, its root available and its full listing received
since the plug (or the referee) started; until then nothing is inferred from it and nothing is addressed to it. A
path with orders under way waits for their results before it is decided again, so orders never race each other (the
orders of a replica whose plug has been gone 10 s are withdrawn, its paths decided again without it), and no more is
decided while 4,000 actions are under way. A replica's deletions are judged whole against the deletion
threshold (:mod:`onitu.sync.decide.deletions`). Everything the referee knows that matters survives it: agreed and
held versions, orders and pending plans are in the space; the replicas' current entries are asked again (a rescan)
when it starts. A changed ``onitu.yaml`` is applied in place (:meth:`Referee.reconfigure`): no restart, no rescan.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import sys
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from onitu import gcpolicy, heap
from onitu.config import Config
from onitu.config_watch import ConfigWatch
from onitu.fairsort import fair_sorted
from onitu.heartbeat import Liveness
from onitu.space.client import SpaceClient
from onitu.space.errors import EventsLost, SpaceError
from onitu.sync import settings, tuples
from onitu.sync.commands import Commands
from onitu.sync.decide.deletions import Deletions
from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import (
    Action,
    Copy,
    Delete,
    KeepConflict,
    MarkUnavailable,
    Mkdir,
    Move,
    Observed,
    Replica,
    content_of,
    paths_of,
    service_of,
)
from onitu.sync.decide.reconcile import reconcile
from onitu.sync.decide.renames import deleted, find_renames
from onitu.sync.decide.rules import Rules
from onitu.sync.decide.split_passes import split
from onitu.sync.drivers.contract import ancestors, is_under
from onitu.sync.majordomo import registry
from onitu.sync.process import serve
from onitu.sync.state.awaiting import Awaiting
from onitu.sync.state.backoff import Backoff
from onitu.sync.state.ledger import Ledger
from onitu.sync.state.orders import Orders
from onitu.sync.state.plugs import Plugs
from onitu.sync.state.replicas import Mirror
from onitu.sync.state.settled import Settled, digest, settings_of
from onitu.sync.state.tree import Tree

log = logging.getLogger(__name__)

SETTLE = 0.05  # seconds of quiet after a report before deciding (lets a burst of reports arrive together)
DRAIN = 0.25  # seconds at most spent on what is already here before the recorded changes are committed
PASS_SIZE = 2000  # paths per decision batch
# Orders under way beyond which nothing more is decided until results come back: a tree of a million files arriving
# at once is decided as the plugs keep up, not queued whole (in the referee's memory, the space's and the plugs').
OUTSTANDING = 4000
STUCK = 5.0  # seconds queued passes wait on orders under way, none decided meanwhile, before being split again
ABSENT = 10.0  # seconds a replica's plug is gone before its orders are withdrawn (not for a restart or a failover)
INBOUND = (re.compile(r"^sync\.(report|done|query)$"), None, None, None, None)


class Referee:
    """The referee's state and loop."""

    def __init__(self, config: Config, space: SpaceClient) -> None:
        self.config, self.space = config, space
        self.base = config  # without the agents' services, which come and go in the space
        self.rules: Rules = settings.rules(config)
        self.folders = {f: self.rules.services(f) for f in config.folders}
        self.ledger = Ledger()
        self.mirror = Mirror(self.ledger)
        self.tree = Tree(self._is_known)
        self.ledger.on_agreed = self._agreed_changed
        self.plugs = Plugs()
        self.dirty: dict[str, set[str]] = defaultdict(set)
        self.queued: dict[str, deque[tuple[list[str], dict[str, int]]]] = defaultdict(deque)  # passes to decide
        self.orders = Orders(self.ledger, space, lambda service: bool(self.plugs.info.get(service, {}).get("rows")))
        self.backoff = Backoff()  # failed paths: when to decide them again
        self.awaiting = Awaiting(self.ledger)
        self.settled = Settled(space, self.ledger, self.mirror)
        self.deletions = Deletions()
        self.consumed: list[tuple] = []
        self.commands = Commands(self)
        self.liveness = Liveness(lambda: {})
        self.watch = ConfigWatch(config, report=False)  # the watchdog reports the file's errors
        self._quiet_since = 0.0
        self._stuck: dict[str, float] = {}  # folder -> since when its queued passes wait, none being decided
        self._stop = False

    # -- start ----------------------------------------------------------------------------------------------------

    def start(self) -> Any:
        """Load the state, ask every plug for a full listing; return the stream of reports."""
        stream = self.space.notify("write", INBOUND)
        self.ledger.load(self.space)
        self.settled.load({folder: self._settings(folder) for folder in self.folders})
        self.awaiting.load(self.space)
        self.orders.load()
        self._refresh_plugs()
        self.space.batch([("write", (tuples.RESCAN, service, secrets.token_hex(4), {}), 60.0)
                          for service in self.config.services])
        self._read_backlog()
        return stream

    def _read_backlog(self) -> None:
        """Apply the reports and results waiting in the space, oldest first: the order their plugs wrote them in
        (sequence numbers restart with each plug, so sorting by them would put a dead plug's last reports after
        its successor's)."""
        for tup in self.space.read_all(INBOUND):
            self.inbound(tup)

    def _resubscribe(self, stream: Any) -> Any:
        """A new stream of reports after the old one lost events (the space restarted and could not replay them);
        what it missed is still in the space."""
        log.info("the report stream lost events; reading the reports waiting in the space")
        with contextlib.suppress(SpaceError):
            stream.close()
        stream = self.space.notify("write", INBOUND)
        self._read_backlog()
        return stream

    def _refresh_remote(self) -> None:
        """Take in the services of remote agents admitted since (:mod:`onitu.sync.majordomo.registry`)."""
        found = registry.services(self.space.read_all((registry.REMOTE, None, None)))
        self._adopt(registry.with_remote(self.base, found))

    def reconfigure(self, config: Config) -> None:
        """Apply a changed config file in place: folders and services added or removed, rules changed. Only the
        folders whose replicas or rules changed are decided again (from what is known: no rescan); new replicas
        are asked for a listing; the orders of removed ones are withdrawn (nothing is deleted for them)."""
        log.info("config changed: folders %s; services %s", ", ".join(sorted(config.folders)) or "none",
                 ", ".join(sorted(config.services)) or "none")
        self.base = config
        self._refresh_remote()

    def _adopt(self, config: Config) -> None:
        old = self.config
        if (config.folders, config.services, config.sync) == (old.folders, old.services, old.sync):
            return
        self.config, self.rules = config, settings.rules(config)
        self.folders = {f: self.rules.services(f) for f in config.folders}
        for folder in self.folders:
            if settings_of(old, folder) != settings_of(config, folder):
                self.settled.unsettle(folder)
                self.dirty[folder].update(self._known(folder))
        for folder in old.folders.keys() - config.folders.keys():
            self.dirty.pop(folder, None)
            self.queued.pop(folder, None)
        self.orders.withdraw(lambda o: o.folder in self.folders and o.service in self.folders[o.folder])
        new = config.services.keys() - old.services.keys()
        if new:
            self.space.batch([("write", (tuples.RESCAN, s, secrets.token_hex(4), {}), 60.0) for s in new])

    def _refresh_plugs(self) -> None:
        self._refresh_remote()
        found = {}
        for _, service, info in self.space.read_all((tuples.PLUG, None, None)):
            if isinstance(service, str) and isinstance(info, dict) and service in self.config.services:
                found[service] = info
        for service in self.plugs.info.keys() | found.keys():
            before, now = self.plugs.info.get(service, {}), found.get(service, {})
            if (before.get("id"), before.get("available")) != (now.get("id"), now.get("available")):
                log.info("plug of %s: %s", service, "available" if now.get("available") else
                         now.get("reason") or "gone")
                for folder in self.folders:  # decisions made without it are due again
                    self.dirty[folder].update(self._undecided_if_settled(folder))
        self.plugs.info = found
        self.plugs.seen |= found.keys()
        absent = self.plugs.absent(self.config.services, ABSENT)
        for folder, action in self.orders.withdraw(lambda o: o.service not in absent) if absent else ():
            self.decide_again(folder, paths_of(action))  # an agent away for a week must not hold them for everyone
            if isinstance(action, KeepConflict):
                self.awaiting.never_made(folder, action.conflict, self.orders.is_busy(folder, action.conflict))

    # -- what comes in --------------------------------------------------------------------------------------------

    def inbound(self, tup: tuple) -> None:
        """Apply one report or result (once, in each plug's order)."""
        tag, service, plug_id, seq, body = tup
        if tag == tuples.QUERY:  # a read (the API's files): answered at once, between two reports
            self.consumed.append((tag, service, None, None, None))
            self.commands.query(service, plug_id, seq, body)
            return
        # taken once applied, by (plug, number), which is unique: a template with the whole body would cost as much
        # to match as the body did to send, and keep it in memory meanwhile
        self.consumed.append((tag, service, plug_id, seq, None))
        if not (isinstance(service, str) and isinstance(plug_id, str) and type(seq) is int):
            log.warning("dropping a malformed %s tuple", tag)
            return
        if seq <= self.plugs.last_seq.get(plug_id, 0):
            return
        self.plugs.last_seq[plug_id] = seq
        try:
            if not isinstance(body, dict) or body.get("folder") not in self.folders:
                raise ValueError("no known folder")
            entries = tuples.entries_from_wire(body.get("entries"))
            if tag == tuples.REPORT:
                for conflict, original in tuples.set_aside_from_wire(body.get("set_aside")):
                    log.warning("%s/%s: %s collided with %s: kept as a conflict copy", service, body["folder"],
                                conflict, original)
                    self.awaiting.set_aside(body["folder"], conflict, original, service)
                self._report(service, plug_id, body["folder"], body.get("scan"), entries)
                # a burst of changes is decided once all here; results do not wait (busy plugs rarely pause 50 ms)
                self._quiet_since = time.monotonic()
            else:
                self._done(service, body, entries)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("dropping a %s from %s: %s", tag, service, exc)

    def _report(self, service: str, plug_id: str, folder: str, scan: Any,
                entries: list[tuple[str, Observed | None]]) -> None:
        key = (service, folder)
        if scan is None:
            self.deletions.reported(key, entries)
            self._observe(service, folder, entries)
            self.dirty[folder].update(path for path, _ in entries)
            return
        if scan == "begin":
            self.plugs.staging[key] = (plug_id, set())
        staged = self.plugs.staging.get(key)
        if staged is None or staged[0] != plug_id:
            return  # a part of a listing whose beginning we did not see: the next listing will do
        # What a listing shows is true as it arrives; only what it does not show waits for its end.
        seen = staged[1]
        entries = [(path, obs) for path, obs in entries if obs is not None]
        seen.update(path for path, _ in entries)
        changed = self._observe(service, folder, entries)
        if folder in self.settled.folders:  # at a restart, most of a listing is what the ledger says it holds
            changed = [p for p in changed if not self.settled.in_step(service, folder, p)]
        self.dirty[folder].update(changed)
        if scan == "end":
            del self.plugs.staging[key]
            gone = [p for p in self.mirror.paths(service, folder) if p not in seen]
            self._observe(service, folder, [(p, None) for p in gone])
            changed = set(gone)
            changed.update(p for p in self.ledger.held[key] if p not in seen)
            agreed = self.ledger.agreed[folder]
            changed.update(p for p in agreed if p not in seen and agreed.is_live(p))
            self.dirty[folder] |= changed
            self.plugs.scanned = {s for s in self.plugs.scanned if s[:2] != key} | {(service, folder, plug_id)}
            log.info("%s/%s: listing of %d entries, %d gone or not held", service, folder, len(seen), len(changed))
            if self.plugs.info.get(service, {}).get("id") != plug_id:
                self._refresh_plugs()

    def _observe(self, service: str, folder: str, entries: list[tuple[str, Observed | None]]) -> list[str]:
        """Record what ``service`` has now at each path; the paths whose content changed (a failed order's path
        that changed is tried again at once: the failure was about what it held before)."""
        changed = []
        for path, obs in entries:
            if self.mirror.set(service, folder, path, obs):
                changed.append(path)
                self.tree.add(folder, path)
                self.backoff.clear(folder, path)
        return changed

    def _agreed_changed(self, folder: str, path: str, before: FileMeta | None, after: FileMeta | None,
                        matching: int) -> None:
        self.mirror.rebase(folder, path, before, after, matching)
        if before is None:
            self.tree.add(folder, path)

    def _done(self, service: str, body: dict, entries: list[tuple[str, Observed | None]]) -> None:
        folder, oid, results = body["folder"], body.get("order"), body["results"]
        actions, metas = self.orders.as_sent(oid, folder, body)
        if not (isinstance(results, list) and len(results) == len(actions) == len(metas)
                and all(isinstance(r, dict) and type(r.get("ok")) is bool for r in results)):
            raise ValueError("a result needs one {ok, error} per action of its order")
        self._observe(service, folder, entries)
        _, released = self.orders.done(oid)
        for action, meta, result in zip(actions, metas, results, strict=True):
            if result["ok"]:
                self._record(service, folder, action, meta)
                for path in paths_of(action):  # a later failure starts again from the shortest delay
                    self.backoff.clear(folder, path)
                continue
            log.info("%s: order on %s/%s failed: %s", service, folder, paths_of(action)[0], result.get("error"))
            for path in paths_of(action):
                self._later(folder, path)
        if all(r["ok"] for r in results):
            if released:
                self.orders.send(released)
        else:
            for f, deferred_action in released:
                self._later(f, paths_of(deferred_action)[0])
        for path, obs in entries:  # changed again since, or not what was ordered: decide again
            if content_of(obs) != content_of(self.ledger.holds(service, folder, path)):
                self.dirty[folder].add(path)

    def _record(self, service: str, folder: str, action: Action, meta: FileMeta | None) -> None:
        """The version ``service`` holds after carrying out ``action`` (committed with the next batch)."""
        ledger, agreed = self.ledger, self.ledger.agreed[folder]
        held = ledger.held[service, folder]
        if isinstance(action, Copy | Mkdir):
            ledger.hold(service, folder, action.path, agreed.get(action.path) if meta is None else meta)
        elif isinstance(action, Delete):
            for path in [action.path, *self.tree.below(folder, action.path, held.__contains__)]:
                ledger.hold(service, folder, path, None)
        else:
            src, dst = (action.src, action.dst) if isinstance(action, Move) else (action.path, action.conflict)
            for path in [src, *self.tree.below(folder, src, held.__contains__)]:
                ledger.hold(service, folder, path, None)
            for path in [dst, *self.tree.below(folder, dst, agreed.__contains__)]:
                if path in agreed:
                    ledger.hold(service, folder, path, agreed[path])

    def _later(self, folder: str, path: str) -> None:
        self.backoff.failed(folder, path)
        self.dirty[folder].add(path)

    # -- decisions ------------------------------------------------------------------------------------------------

    def decide(self) -> None:
        """Decide every folder's dirty paths that can be decided now."""
        now = time.monotonic()
        self.deletions.end_bursts()
        for folder in self.folders:
            dirty, queued = self.dirty[folder], self.queued[folder]
            if not (dirty or queued) or self.orders.actions >= OUTSTANDING:
                continue
            states = self.states(folder)
            shown = self.plugs.shown(folder, states)  # while listings are under way, what they showed so far
            if shown is None:
                continue
            states = {s: None if state == "wait" else state for s, state in states.items()}
            if not queued:
                ready = self._whole_trees(folder, {p for p in dirty if self._ready(folder, p, now) and shown(p)})
                for path in [p for p in ready if not shown(p)]:  # below a directory: it is decided with all below
                    ready -= {path, *ancestors(path)}
                dirty -= ready
                queued.extend(self._passes(folder, fair_sorted(ready), states) if ready else ())
            kept: list[tuple[list[str], dict[str, int]]] = []
            while queued and self.orders.actions < OUTSTANDING:  # beyond: the rest waits for the plugs' results
                paths, ahead = queued.popleft()
                unready = next((p for p in paths if not (self._ready(folder, p, now) and shown(p))), None)
                if unready is None:
                    self.pass_paths(folder, paths, states, ahead=ahead)
                    self._stuck.pop(folder, None)
                elif all(s is None for s in states.values()) and self.orders.is_busy(folder, unready) and \
                        now - self._stuck.setdefault(folder, now) < STUCK:
                    kept.append((paths, ahead))  # under a directory the pass before is making, say: soon ready
                else:
                    dirty.update(paths)  # something changed since it was queued: decided afresh later
            queued.extendleft(reversed(kept))
            if not kept:
                self._stuck.pop(folder, None)

    def _passes(self, folder: str, paths: list[str], states: dict[str, str | None]
                ) -> list[tuple[list[str], dict[str, int]]]:
        """``paths`` split into passes (:func:`onitu.sync.decide.split_passes.split`), each with, per replica, the
        deletions of the passes after it (every pass judges the whole deletion); renames sought only if one is gone."""
        if len(paths) <= PASS_SIZE:
            return [(paths, {})]
        renames, gone = [], {service: set() for service, state in states.items() if state is None}
        if self.mirror.lost_any(folder, paths, gone):  # else no view of all the paths: a first sync's peak memory
            replicas, ancestors = self._replicas(folder, paths, states)
            for replica in (r for r in replicas if r.unavailable is None):
                renames += find_renames(replica, ancestors)
                gone[replica.service] = deleted(replica, ancestors)
        passes = split(paths, renames, PASS_SIZE, lambda path: self._must_stay_whole(folder, path))
        ahead = {service: len(g) for service, g in gone.items()}
        out = []
        for chunk in passes:
            for service, g in gone.items():
                ahead[service] -= sum(1 for p in chunk if p in g)
            out.append((chunk, dict(ahead)))
        return out

    def _must_stay_whole(self, folder: str, path: str) -> bool:
        """Whether a directory is deleted or replaced on a replica that held it (decided with all below it)."""
        for service in self.folders[folder]:
            held = self.ledger.held[service, folder].get(path)
            if held is not None and held.kind == "dir":
                now = self.mirror.get(service, folder, path)
                if now is None or now.kind != "dir":
                    return True
        return False

    def _ready(self, folder: str, path: str, now: float) -> bool:
        return not (self.backoff.waiting(folder, path, now) or self.orders.is_busy(folder, path)
                    or self.deletions.waiting(folder, path) or self.awaiting.is_held(folder, path))

    def _whole_trees(self, folder: str, ready: set[str]) -> set[str]:
        """``ready`` with everything known below its directories (a directory is decided with its content)."""
        dirs = {p for p in ready if self._is_dir(folder, p)}
        if not dirs:
            return ready
        below = set()
        for d in dirs:
            below.update(self.tree.below(folder, d, lambda p: self._is_known(folder, p)))
        blocked = {p for p in below if not self._ready(folder, p, time.monotonic())}
        return ready | below if not blocked else ready - {d for d in dirs if any(is_under(b, d) for b in blocked)}

    def states(self, folder: str) -> dict[str, str | None]:
        """Per service of ``folder``, why it cannot take part in a decision now (see :meth:`Plugs.state`)."""
        return {s: self.plugs.state(s, folder) for s in self.folders[folder]}

    def decide_again(self, folder: str, paths: Iterable[str]) -> None:
        """Decide ``paths`` of ``folder`` again, when they can be."""
        self.dirty[folder].update(paths)

    def undecided(self, folder: str) -> int:
        """How many paths of ``folder`` wait for a decision."""
        return len(self.dirty[folder]) + sum(len(paths) for paths, _ in self.queued[folder])

    def _settings(self, folder: str) -> str:
        return digest(settings_of(self.config, folder))

    def _undecided_if_settled(self, folder: str) -> set[str]:
        """What to decide again when the replicas change: a settled folder's paths out of step, else every path."""
        if folder in self.settled.folders:
            return self.settled.out_of_step(folder, self.folders[folder])
        return self._known(folder)

    def _settle(self) -> None:
        """Record the folders decided whole under their settings: every replica listed, nothing left to decide."""
        for folder in self.folders:
            if folder not in self.settled.folders and not self.undecided(folder) and \
                    all(state is None for state in self.states(folder).values()):
                self.settled.settle(folder, self._settings(folder))

    def _known(self, folder: str) -> set[str]:
        """Every path of ``folder`` agreed or seen on a replica."""
        return set(self.ledger.agreed[folder]).union(self.mirror.known(folder))

    def _is_known(self, folder: str, path: str) -> bool:
        return path in self.ledger.agreed[folder] or any(
            self.mirror.get(s, folder, path) is not None for s in self.folders[folder])

    def _is_dir(self, folder: str, path: str) -> bool:
        meta = self.ledger.agreed[folder].get(path)
        if meta is not None and meta.kind == "dir":
            return True
        return any((obs := self.mirror.get(s, folder, path)) is not None and obs.kind == "dir"
                   for s in self.folders[folder])

    def _replicas(self, folder: str, paths: list[str], states: dict[str, str | None]
                  ) -> tuple[list[Replica], dict[str, FileMeta]]:
        """Every replica's side of ``paths``, and their agreed versions."""
        replicas = []
        for service, state in states.items():
            held, now = self.ledger.held[service, folder], {}
            for path in paths:
                if (obs := self.mirror.get(service, folder, path)) is not None:
                    now[path] = obs
            replicas.append(Replica(service, now, {p: held[p] for p in paths if p in held}, state))
        agreed = self.ledger.agreed[folder]
        return replicas, {p: agreed[p] for p in paths if p in agreed}

    def pass_paths(self, folder: str, paths: list[str], states: dict[str, str | None], *, approved: str = "",
                   ahead: dict[str, int] | None = None) -> None:
        """Decide ``paths`` of ``folder`` and send the outcome (``approved``: a service whose deletions go ahead
        whatever their number; ``ahead``: per service, deletions among the paths to be decided next)."""
        replicas, ancestors = self._replicas(folder, paths, states)
        history = {}
        for s in states:  # deletions carried out recently (no longer held), held for approval, or in later passes
            recent, waiting = self.deletions.recent(s, folder), len(self.awaiting.held_paths(folder, s))
            history[s] = (recent + waiting + (ahead or {}).get(s, 0), self.ledger.holding(s, folder) + recent)
        plan = reconcile(ancestors, replicas, when=datetime.now(UTC),
                         routing=self.rules.routing(folder), deletion_minimum=self.config.sync.deletion_minimum,
                         deletion_threshold=2.0 if approved else self.config.sync.deletion_threshold,
                         history={s: h for s, h in history.items() if s != approved})
        for meta in plan.agreed.values():
            self.ledger.agree(folder, meta)
        for held_plan in plan.held:
            self.awaiting.hold(folder, held_plan)
        self._confirm(folder, paths, plan.agreed, replicas, plan.actions)
        self.deletions.count(folder, replicas, ancestors, self.awaiting.held_deletions)
        self._send_plan(folder, plan.actions)

    def _confirm(self, folder: str, paths: list[str], new: dict[str, FileMeta], replicas: list[Replica],
                 actions: Iterable[Action]) -> None:
        """Record, for replicas no order is sent to about a path, that they hold its agreed version."""
        agreed = self.ledger.agreed[folder]
        ordered = {(service_of(a), p) for a in actions for p in paths_of(a)}
        for replica in replicas:
            if replica.unavailable:
                continue
            waiting = self.awaiting.held_paths(folder, replica.service)
            for path in set(paths) | set(new):
                if (replica.service, path) in ordered or path in waiting:
                    continue
                meta = new.get(path) or agreed.get(path)
                obs = replica.now.get(path)
                if meta is not None and not meta.tombstone and obs is not None and obs.content == (meta.kind,
                                                                                                   meta.sha256):
                    self.ledger.hold(replica.service, folder, path, meta)
                elif obs is None:
                    self.ledger.hold(replica.service, folder, path, None)

    def _send_plan(self, folder: str, actions: Iterable[Action]) -> None:
        now: list[tuple[str, Action]] = []
        later = []
        conflicts: set[tuple[str, str]] = set()  # (service, conflict copy) renamed aside by this plan
        for action in actions:
            if isinstance(action, MarkUnavailable):
                continue
            if isinstance(action, KeepConflict):
                self.awaiting.conflict(folder, action)
            if isinstance(action, Copy) and any((s, action.path) in conflicts for s in action.sources):
                later.append(action)  # its sources must first rename their version aside
                continue
            now.append((folder, action))
            if isinstance(action, KeepConflict):
                conflicts.add((action.on, action.conflict))
        oids = self.orders.send(now)
        oid_of = {(a.on, a.conflict): oid for (_, a), oid in zip(now, oids, strict=True) if isinstance(a, KeepConflict)}
        for action in later:
            deps = [oid_of[s, action.path] for s in action.sources if (s, action.path) in oid_of]
            self.orders.after(deps[-1], folder, action)

    # -- loop -----------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop`."""
        with self.liveness.busy(), gcpolicy.loading():  # a million records: see onitu.gcpolicy.loading
            stream = self.start()
        liveness, last_tick = self.liveness, 0.0
        while not self._stop:
            liveness.beat()
            try:
                event = stream.next_open(0.2)
                self.inbound(event.tuple)
                drain_until = time.monotonic() + DRAIN  # what is here, for a while: queries can come without end
                while time.monotonic() < drain_until:
                    event = stream.next_open(0)
                    self.inbound(event.tuple)
                    liveness.beat()  # a long backlog of results is work, not a hang
            except TimeoutError:
                pass
            except EventsLost:
                stream = self._resubscribe(stream)
            self.ledger.commit(self.space)  # what the results recorded, in one go, before their tuples are taken
            tuples.take_all(self.space, self.consumed)  # applied, not yet decided: a listing waits for its parts
            if time.monotonic() - self._quiet_since >= SETTLE:
                with liveness.busy():  # finite work on tables in memory, minutes of it at a million paths
                    self.decide()
            if time.monotonic() - last_tick >= 0.5:
                last_tick = time.monotonic()
                if (config := self.watch.poll()) is not None:
                    self.reconfigure(config)
                self._refresh_plugs()
                self.commands.poll()
                self._compact()
                self._settle()

    def _compact(self) -> None:
        """Give back the room of tables a burst of work left large and nearly empty."""
        self.mirror.compact()
        if not self.orders.burst_over():
            return
        # the end of a burst: merge the new paths into the index (a sort of every path), ...
        self.tree.settle()
        for folder, dirty in self.dirty.items():
            if not dirty and sys.getsizeof(dirty) > 4096:
                self.dirty[folder] = set()
        heap.give_back()  # ... and give back what the burst used

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stop = True

    def close(self) -> None:
        """Stop answering heartbeats."""
        self.liveness.close()


def main(argv: list[str] | None = None) -> int:
    """Run the referee of the config's folders."""
    return serve("onitu-referee", __doc__, lambda config, space, args: Referee(config, space), argv)


if __name__ == "__main__":
    raise SystemExit(main())
