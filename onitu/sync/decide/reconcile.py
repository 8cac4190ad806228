"""The referee's decision, as a pure function: what the hub agreed, what each replica has now → what to do.

For every path of a folder, each available replica is compared with the version it last confirmed holding
(``held``): equal content means *unchanged*, anything else is a *change* (creation, modification, deletion, or a
file replaced by a directory). A change is *clean* when the replica held the latest agreed version (its version
vector equals or descends the agreed one; or nothing was there on either side), *stale* otherwise.

- No change: replicas that lack the agreed content (behind, new, or w-only ones changed locally) are updated.
- Changes to one same content (or deletions only): that is the outcome, no conflict ("same content on both sides").
- Modification beats deletion: when someone changed a file that someone else deleted, the file stays (the
  deleting replicas get it back); a deletion is only propagated when no replica holds a newer version.
- Otherwise the contents conflict and a winner is picked by these keys, in order:

  1. a directory beats a file (a directory is never renamed away from under its children);
  2. a clean change beats the agreed version, which beats a stale change (a change made on a replica that did
     not hold the latest version loses to that version);
  3. the newer modification time wins;
  4. the smaller service name wins (so the outcome never depends on the order replicas are given in).

  Every losing content is kept: the replicas holding it rename it to ``name.conflict-<YYYYMMDD-HHMMSS>-<service>.ext``
  (no transfer) and it is copied to the other replicas as a new file.
- A replica that is unavailable takes no part: nothing is inferred from its listing and no order is addressed to it.
- Renames are propagated as moves (see :mod:`onitu.sync.decide.renames`).
- Deletions by one replica of more than ``deletion_threshold`` of the entries it held in the folder, in one pass,
  are not executed: they come back as a :class:`HeldPlan` for the user to approve.
- Changes on a replica whose mode lacks ``r`` are not read (and are overwritten by the next update); replicas
  whose mode lacks ``w``, or whose rules refuse a file, receive no order about it.

A directory that still has something below it after the decision is kept, even if some replica deleted it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from onitu.sync.decide.metadata import FileMeta, VersionVector
from onitu.sync.decide.plan import (
    Action,
    Content,
    Copy,
    Delete,
    HeldPlan,
    KeepConflict,
    MarkUnavailable,
    Mkdir,
    Move,
    Observed,
    Plan,
    Replica,
    Routing,
    content_of,
    is_clean,
)
from onitu.sync.decide.renames import apply_moves, find_renames
from onitu.sync.drivers.contract import is_under, parent_of
from onitu.sync.drivers.naming import conflict_name


class _Everywhere:
    def selects(self, service: str, path: str, size: int, is_dir: bool) -> bool:
        return True

    def reads(self, service: str, path: str, size: int, is_dir: bool) -> bool:
        return True


@dataclass
class _Change:
    service: str
    content: Content | None
    observed: Observed | None
    base: FileMeta | None
    clean: bool


@dataclass
class _Outcome:
    target: Content | None
    size: int = 0
    meta: FileMeta | None = None  # the new agreed metadata, when it changes
    losers: list[tuple[Content, str, Observed]] = field(default_factory=list)  # content, named after, a sample
    deleters: tuple[str, ...] = ()


def _changes(path: str, agreed: FileMeta | None, live: Sequence[Replica], routing: Routing) -> list[_Change]:
    found = []
    for replica in live:
        held, now = replica.held.get(path), replica.now.get(path)
        if content_of(now) == content_of(held):
            continue
        sample = now or held
        assert sample is not None  # both absent would be equal
        if routing.reads(replica.service, path, sample.size, sample.kind == "dir"):
            found.append(_Change(replica.service, content_of(now), now, held, is_clean(held, agreed)))
    return found


def _decide(path: str, agreed: FileMeta | None, live: Sequence[Replica], routing: Routing) -> _Outcome:
    """The content ``path`` must have after this pass, and the versions that lose to it."""
    agreed_content = content_of(agreed)
    changes = _changes(path, agreed, live, routing)
    if not changes:
        return _Outcome(agreed_content, agreed.size if agreed_content else 0)
    # content -> (rank, service it is named after, a sample observation); the smallest rank wins
    ranked: dict[Content, tuple[tuple[bool, int, int, str], str, Observed]] = {}
    for change in changes:
        if change.content is not None and change.observed is not None:
            obs = change.observed
            rank = (obs.kind != "dir", 0 if change.clean else 2, -obs.mtime_ns, change.service)
            if change.content not in ranked or rank < ranked[change.content][0]:
                ranked[change.content] = (rank, change.service, obs)
    if agreed is not None and agreed_content is not None and not any(c.clean for c in changes):
        sample = Observed(agreed.kind, agreed.sha256, agreed.size, agreed.mtime_ns)
        holders = sorted(c.service for c in changes if c.content == agreed_content)
        rank = (agreed.kind != "dir", 1, -agreed.mtime_ns, "")
        if agreed_content not in ranked or rank < ranked[agreed_content][0]:
            # a stale replica that caught up with the agreed version is not a rival of it
            ranked[agreed_content] = (rank, holders[0] if holders else "", sample)
    deleters = tuple(c.service for c in changes if c.content is None)
    if not ranked:  # deletions only (modification beats deletion, so any other change would have won)
        meta = _next_meta(path, agreed, changes, deleters[0], None) if agreed_content else None
        return _Outcome(None, meta=meta, deleters=deleters)
    order = sorted(ranked, key=lambda content: ranked[content][0])
    target, (_, winner, sample) = order[0], ranked[order[0]]
    meta = None if target == agreed_content else _next_meta(path, agreed, changes, winner, sample)
    losers = [(content, ranked[content][1], ranked[content][2]) for content in order[1:]]
    return _Outcome(target, sample.size, meta, losers)


def _next_meta(path: str, agreed: FileMeta | None, changes: list[_Change], winner: str,
               sample: Observed | None) -> FileMeta:
    version = agreed.version if agreed else VersionVector()
    for change in changes:
        if change.base is not None:
            version = version.merge(change.base.version)
    version = version.bump(winner)
    if sample is None:  # a deletion
        kind = agreed.kind if agreed else "file"
        return FileMeta(path, kind, version=version, tombstone=True, mtime_ns=agreed.mtime_ns if agreed else 0)
    return FileMeta(path, sample.kind, sample.size, sample.sha256, version, False, sample.mtime_ns)


def _keep_parents(outcomes: dict[str, _Outcome], ancestors: Mapping[str, FileMeta]) -> None:
    """A directory something stays below is kept, whoever deleted it."""
    needed: set[str] = set()
    for path, outcome in outcomes.items():
        parent = parent_of(path) if outcome.target is not None else ""
        while parent and parent not in needed:
            needed.add(parent)
            parent = parent_of(parent)
    for path in sorted(needed & outcomes.keys()):
        outcome = outcomes[path]
        if outcome.target is None:
            agreed = ancestors.get(path)
            meta = None
            if content_of(agreed) != ("dir", None) and outcome.deleters:
                version = (agreed.version if agreed else VersionVector()).bump(outcome.deleters[0])
                meta = FileMeta(path, "dir", version=version)
            outcomes[path] = _Outcome(("dir", None), meta=meta)


class _Builder:
    """Turns per-path outcomes into orders, conflict copies included."""

    def __init__(self, live: Sequence[Replica], routing: Routing, when: datetime, taken: set[str]) -> None:
        self.live, self.routing, self.when, self.taken = live, routing, when, taken

    def build(self, path: str, outcome: _Outcome) -> tuple[list[Action], dict[str, FileMeta]]:
        """The orders and agreed metadata for one path."""
        actions: list[Action] = []
        agreed: dict[str, FileMeta] = {path: outcome.meta} if outcome.meta else {}
        moved_away: set[str] = set()
        for content, service, sample in outcome.losers:
            holders = [r.service for r in self.live if content_of(r.now.get(path)) == content]
            if not holders:
                continue
            named = service or holders[0]
            conflict = conflict_name(path, self.when, named, self.taken)
            self.taken.add(conflict)
            for replica in self.live:
                if replica.service in holders:
                    actions.append(KeepConflict(path, replica.service, conflict, replica.now[path].content_id))
            moved_away.update(holders)
            agreed[conflict] = FileMeta(conflict, "file", sample.size, sample.sha256, VersionVector().bump(named),
                                        False, sample.mtime_ns)
            state = {r.service: sample if r.service in holders else r.now.get(conflict) for r in self.live}
            actions += self._updates(conflict, content, sample.size, state, holders)
        state = {r.service: None if r.service in moved_away else r.now.get(path) for r in self.live}
        sources = [service for service, now in state.items() if content_of(now) == outcome.target]
        actions += self._updates(path, outcome.target, outcome.size, state, sources)
        return actions, agreed

    def _updates(self, path: str, target: Content | None, size: int, state: Mapping[str, Observed | None],
                 sources: list[str]) -> list[Action]:
        """Orders making every replica that ``selects`` the path hold ``target`` (``state``: what each has)."""
        actions: list[Action] = []
        for service, now in state.items():
            if content_of(now) == target:
                continue
            if target is None:
                assert now is not None
                if self.routing.selects(service, path, now.size, now.kind == "dir"):
                    actions.append(Delete(path, service, now.content_id))
                continue
            if not self.routing.selects(service, path, size, target[0] == "dir"):
                continue
            if now is not None and now.kind != target[0]:
                actions.append(Delete(path, service, now.content_id))
                now = None
            if target[0] == "dir":
                actions.append(Mkdir(path, service))
            elif sources and target[1] is not None:
                actions.append(Copy(path, service, tuple(sources), target[1], size, now.content_id if now else None))
        return actions


def _phase(action: Action) -> tuple[int, int, str]:
    """Execution order: conflict copies aside, moves, deletions (deepest first), new directories, copies."""
    if isinstance(action, MarkUnavailable):
        return (0, 0, action.service)
    if isinstance(action, Delete):
        return (3, -action.path.count("/"), action.path)
    phase = {KeepConflict: 1, Move: 2, Mkdir: 4, Copy: 5}[type(action)]
    return (phase, 0, action.src if isinstance(action, Move) else action.path)


def reconcile(
    ancestors: Mapping[str, FileMeta], replicas: Sequence[Replica], *, when: datetime,
    routing: Routing | None = None, deletion_threshold: float = 0.5, deletion_minimum: int = 1,
    history: Mapping[str, tuple[int, int]] | None = None,
) -> Plan:
    """Decide one pass over one folder (see the module documentation for the rules).

    ``ancestors``: the hub's agreed metadata per path, tombstones included; ``when``: the time stamped on conflict
    copies; ``routing``: which services hold and are read for each path (default: all of them, both ways).
    Deletions are held when more than ``deletion_threshold`` of a replica's entries go, and at least
    ``deletion_minimum``. ``history``: per service, for a pass over part of a folder, (its deletions counted outside
    this pass, entries of the whole folder it held before them): deletions decided over several passes, or
    reported over some time, then count together.
    """
    routing = routing or _Everywhere()
    ordered = sorted(replicas, key=lambda r: r.service)
    live = [r for r in ordered if r.unavailable is None]
    paths = set(ancestors).union(*(r.now.keys() | r.held.keys() for r in live))
    outcomes = {path: _decide(path, ancestors.get(path), live, routing) for path in sorted(paths)}
    _keep_parents(outcomes, ancestors)
    renames = {r.service: find_renames(r, ancestors) for r in live}
    over = _over_threshold(live, renames, routing, deletion_threshold, deletion_minimum, history or {})
    builder = _Builder(live, routing, when, paths.union(*(r.now.keys() for r in ordered)))
    actions: list[Action] = [MarkUnavailable(r.service, r.unavailable) for r in ordered if r.unavailable]
    agreed: dict[str, FileMeta] = {}
    held: dict[str, tuple[list[Action], dict[str, FileMeta]]] = {service: ([], {}) for service in over}
    for path, outcome in outcomes.items():
        path_actions, path_agreed = builder.build(path, outcome)
        holder = next((s for s in outcome.deleters if s in over and not _renamed(path, renames[s])), None)
        into_actions, into_agreed = held[holder] if holder and outcome.target is None else (actions, agreed)
        into_actions += path_actions
        into_agreed.update(path_agreed)
    actions = apply_moves(actions, live, renames)
    plans = tuple(HeldPlan(s, *over[s], tuple(sorted(held[s][0], key=_phase)), held[s][1])
                  for s in sorted(over) if held[s][0] or held[s][1])
    return Plan(tuple(sorted(actions, key=_phase)), agreed, plans)


def _renamed(path: str, renames: list[tuple[str, str]]) -> bool:
    return any(is_under(path, src) for src, _ in renames)


def _over_threshold(live: Sequence[Replica], renames: Mapping[str, list[tuple[str, str]]], routing: Routing,
                    threshold: float, minimum: int, history: Mapping[str, tuple[int, int]],
                    ) -> dict[str, tuple[int, int]]:
    """The replicas that deleted more than ``threshold`` of what they held, with (deleted, held) counts."""
    over = {}
    for replica in live:
        total = deleted = 0
        earlier, folder_total = history.get(replica.service, (0, 0))
        for path, held in replica.held.items():
            if held.tombstone:
                continue
            total += 1
            gone = path not in replica.now and not _renamed(path, renames[replica.service])
            deleted += gone and routing.reads(replica.service, path, held.size, held.kind == "dir")
        if replica.service in history:
            deleted, total = deleted + earlier, folder_total
        if total and deleted >= minimum and deleted / total > threshold:
            over[replica.service] = (deleted, total)
    return over
