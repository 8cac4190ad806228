"""The hub client: what the CLI and the API ask of the sync hub, as plain functions over the space.

Queries read what the referee and the plugs publish (``status``, ``conflicts``); commands (``resolve``,
``approve``, ``reject``) are requests the referee carries out between two decisions (:mod:`onitu.sync.commands`);
``plan`` computes the decision the referee would take now without changing anything: every replica is listed
through its driver (files are hashed unless the plug's hash cache knows them, and the cache is not written), the
agreed and held versions are read from the space when it runs, and each folder is reconciled as one pass.

Everything returns plain data and raises :class:`HubError` (with a message for people) when the hub cannot answer.
"""

from __future__ import annotations

import glob
import logging
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from onitu.config import Config
from onitu.space.client import SpaceClient
from onitu.space.connect import read_info
from onitu.sync import settings, tuples
from onitu.sync.decide.plan import HeldPlan, Observed, Plan, Replica
from onitu.sync.decide.reconcile import reconcile
from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import DriverError
from onitu.sync.majordomo import registry
from onitu.sync.plug.scanner import Scanner
from onitu.sync.state import record
from onitu.sync.state.ledger import Ledger

log = logging.getLogger(__name__)

REPLY_TIMEOUT = 30.0  # seconds the referee has to answer a command
QUERY_TIMEOUT = 5.0  # seconds it has to answer a files query, before the records are read from the space instead


class HubError(Exception):
    """The hub could not answer; the message says why, and what to do."""


class NotRunning(HubError):
    """Onitu, or its sync hub, is not running."""


class NoAnswer(HubError):
    """The referee did not answer in time."""


class Refused(HubError):
    """The referee refused a command (the message is its reason)."""


class Preview(NamedTuple):
    """What ``onitu plan`` shows: per folder, the plan of one pass; the services left out, with the reason."""

    plans: dict[str, Plan]
    unavailable: dict[str, str]


def open_space(config: Config) -> SpaceClient:
    """A client of the config's running space (the caller closes it); :class:`NotRunning` if there is none."""
    from onitu.space import connect

    if read_info(config.data) is None:
        raise NotRunning(f"onitu is not running (no space under {config.data}); start it with `onitu start`")
    return connect(None, data_dir=config.data, session_ttl=5.0)


def status(space: SpaceClient) -> dict[str, Any]:
    """The referee's view of every folder and service (state, files and bytes pending, held deletions, conflicts,
    and ``skipped``: how many paths its plug leaves out or refused), with the plugs' transfers under way
    (``progress``: service -> path -> [bytes done, size]) and what they skip (``skipped``: service -> folder ->
    path -> ``{reason, since, count}``, at most a thousand paths per folder)."""
    found = space.read_all((tuples.STATUS, None))
    progress = {t[1]: t[2] for t in space.read_all((tuples.PROGRESS, None, None))}
    counts, paths = skipped(space)
    if not found:
        return {"folders": {}, "progress": progress, "skipped": paths,
                "note": "the referee has not published its status yet"}
    body = found[0][1]
    for folder, info in body.get("folders", {}).items():
        for service, row in info.get("services", {}).items():
            row["skipped"] = counts.get((service, folder), 0)
    remote = registry.services(space.read_all((registry.REMOTE, None, None)))
    return registry.mark_remote({**body, "progress": progress, "skipped": paths}, remote)


def skipped(space: SpaceClient) -> tuple[dict[tuple[str, str], int], dict[str, dict[str, dict[str, Any]]]]:
    """What the plugs leave out or refused, as they last published it: the count per (service, folder), and
    service -> folder -> path -> ``{reason, since, count}``."""
    counts, paths = {}, {}
    for _, service, body in space.read_all((tuples.SKIPPED, None, None)):
        folders = body.get("folders") if isinstance(body, dict) else None
        if not isinstance(service, str) or not isinstance(folders, dict):
            continue
        for folder, entry in folders.items():
            if isinstance(entry, dict) and isinstance(entry.get("paths"), dict):
                counts[service, str(folder)] = int(entry.get("count") or 0)
                paths.setdefault(service, {})[str(folder)] = entry["paths"]
    return counts, paths


def overview(config: Config, space: SpaceClient) -> dict[str, Any]:
    """Everything ``onitu status`` shows: the processes (name, role, state, restarts, ...), the space pair (mode,
    epoch, primary) and the hub's :func:`status`."""
    from onitu.supervision.launcher import status as supervised

    run = supervised(config) or {}
    keep = ("name", "role", "pid", "epoch", "state", "restarts", "uptime", "last_heartbeat", "reason")
    return {"processes": [{k: p.get(k) for k in keep} for p in run.get("processes", [])],
            "space": {"mode": run.get("mode"), "epoch": run.get("epoch"), "primary": run.get("primary"),
                      "failovers": run.get("failovers")},
            "sync": status(space)}


def conflicts(space: SpaceClient) -> list[dict[str, Any]]:
    """Every conflict copy, by folder and path: ``{folder, conflict, path, service, when}`` (``path``: the file it
    is a version of; ``service``: where that version was made)."""
    rows = sorted((t[1], t[2], t[3]) for t in space.read_all((tuples.CONFLICT, None, None, None)))
    return [{"folder": folder, "conflict": conflict, **info} for folder, conflict, info in rows]


def resolve(space: SpaceClient, patterns: str | Sequence[str], keep: str, folder: str | None = None
            ) -> list[dict[str, str]]:
    """Settle, in one request, the conflicts whose original or conflict path matches a glob of ``patterns``
    (:func:`exactly` turns paths into globs matching only themselves): ``keep`` the ``current`` file, the
    ``conflict`` copy (it becomes the file) or ``both``. The conflicts settled: ``{folder, conflict, path}``.
    ValueError for an unknown ``keep`` or no pattern."""
    if keep not in tuples.KEEP:
        raise ValueError(f"keep must be one of: {', '.join(tuples.KEEP)}")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError("give at least one path or glob")
    reply = _request(space, {"op": "resolve", "patterns": patterns, "keep": keep, "folder": folder})
    return [{"folder": f, "conflict": c, "path": p} for f, c, p in reply.get("resolved", [])]


def exactly(path: str) -> str:
    """A glob that matches ``path`` only (its ``*``, ``?`` and ``[`` made literal)."""
    return glob.escape(path)


def approve(space: SpaceClient, folder: str | None = None, service: str | None = None) -> list[dict[str, Any]]:
    """Carry out the deletions held for approval (those of ``folder`` and ``service`` only, when given); what was
    released: ``{folder, service, paths}`` (``paths``: how many)."""
    return _request(space, {"op": "approve", "folder": folder, "service": service}).get("released", [])


def reject(space: SpaceClient, folder: str | None = None, service: str | None = None) -> list[dict[str, Any]]:
    """Undo the deletions held for approval instead: the files are copied back. Returns as :func:`approve`."""
    return _request(space, {"op": "reject", "folder": folder, "service": service}).get("released", [])


def held(space: SpaceClient, sample: int = 100) -> list[dict[str, Any]]:
    """The deletions held for approval, per folder and the service that made them: ``{folder, service, deleted,
    total, when, paths}`` (``paths``: the first ``sample`` of them, sorted; ``count``: how many)."""
    found = []
    for _, folder, service, info in sorted(space.read_all((tuples.PENDING, None, None, None)), key=_by_names):
        info = info if isinstance(info, dict) else {}
        paths = info.get("paths")
        paths = paths if isinstance(paths, list) else []
        found.append({"folder": folder, "service": service, "deleted": info.get("deleted"),
                      "total": info.get("total"), "when": info.get("when"), "count": len(paths),
                      "paths": paths[:sample]})
    return found


def _by_names(tup: tuple) -> tuple[str, str]:
    return str(tup[1]), str(tup[2])


def transfers(space: SpaceClient) -> dict[str, dict[str, dict[str, int]]]:
    """The transfers under way, as the plugs last published them: service -> path -> ``{done, size}`` (bytes)."""
    found: dict[str, dict[str, dict[str, int]]] = {}
    for _, service, body in space.read_all((tuples.PROGRESS, None, None)):
        if isinstance(service, str) and isinstance(body, dict):
            found[service] = {str(path): {"done": int(v[0]), "size": int(v[1])} for path, v in body.items()
                              if isinstance(v, list | tuple) and len(v) == 2}
    return found


def files(space: SpaceClient, folder: str, directory: str = "", limit: int = 5000) -> list[dict[str, Any]]:
    """The entries of ``folder`` directly in ``directory`` ('' is the folder's root), as the hub agreed them:
    ``{path, name, kind, size, sha256, version, mtime_ns, holders}``, deleted ones left out, directories first,
    then by name (at most ``limit``). The referee answers as the query arrives (it follows it with the plugs'
    reports), from its index of paths, at a cost that follows the directory's size; while it is not running, the
    folder's records are read from the space (a scan)."""
    directory = directory.strip("/")
    try:
        rid = secrets.token_hex(8)
        reply = _ask(space, (tuples.QUERY, rid, folder, directory, limit), rid, QUERY_TIMEOUT)
        return list(reply["files"])
    except (NotRunning, NoAnswer):
        return scan_files(space, folder, directory, limit)


def scan_files(space: SpaceClient, folder: str, directory: str, limit: int) -> list[dict[str, Any]]:
    """:func:`files` from the records in the space: a scan of every record (the referee is not running)."""
    prefix = f"{directory}/" if directory else ""
    key = re.compile("^" + re.escape(tuples.meta_key(folder, prefix)) + "[^/]+$")
    found = []
    for _, stored_key, stored in space.read_all((tuples.META, key, None)):
        try:
            meta, holders, _ = record.decode(tuples.split_meta_key(stored_key)[1], stored)
        except ValueError as exc:
            log.warning("ignoring a corrupt sync record %r: %s", str(stored_key)[:200], exc)
            continue
        if not meta.tombstone:
            found.append(file_entry(meta.to_wire(), holders))
    return sorted_entries(found, limit)


def file_entry(meta: dict[str, Any], holders: list[str]) -> dict[str, Any]:
    """One entry of :func:`files`, from an agreed version as on the wire and the services holding it."""
    return {"path": meta.get("path"), "name": str(meta.get("path")).rsplit("/", 1)[-1], "kind": meta.get("kind"),
            "size": meta.get("size"), "sha256": meta.get("sha256"), "version": meta.get("version"),
            "mtime_ns": meta.get("mtime_ns"), "holders": holders}


def sorted_entries(found: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Directories first, then by name; at most ``limit``."""
    found.sort(key=lambda f: (f["kind"] != "dir", f["name"]))
    return found[:limit]


def _request(space: SpaceClient, body: dict[str, Any]) -> dict[str, Any]:
    """Ask the referee to carry out ``body`` and wait for its answer."""
    rid = secrets.token_hex(8)
    return _ask(space, (tuples.REQUEST, rid, body), rid)


def _ask(space: SpaceClient, question: tuple, rid: str, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
    """Write ``question`` (a request or a query, of id ``rid``) and wait ``timeout`` for the referee's answer."""
    if not space.read_all((tuples.PLUG, None, None)) and not space.read_all((tuples.STATUS, None)):
        raise NotRunning("the sync hub is not running (no referee has published its status)")
    space.write(question, timeout)
    try:
        reply = space.take((tuples.REPLY, rid, None), timeout=timeout)[2]
    except TimeoutError:
        raise NoAnswer(f"no answer from the referee within {timeout:.0f} s") from None
    if not reply.get("ok"):
        raise Refused(str(reply.get("error")))
    return reply


def plan_data(folder_plan: Plan) -> dict[str, Any]:
    """A folder's plan as plain data: its orders (as the referee would send them) and its held deletions."""
    return {"actions": [tuples.action_to_wire(a) for a in folder_plan.actions if not hasattr(a, "reason")],
            "held": [{"service": h.service, "deleted": h.deleted, "total": h.total, "paths": held_paths(h)}
                     for h in folder_plan.held]}


def held_paths(held_plan: HeldPlan) -> list[str]:
    """The paths whose deletion a held plan waits to carry out, sorted."""
    return sorted(path for path, meta in held_plan.agreed.items() if meta.tombstone)


def _listings(config: Config, service: str, known: bool) -> tuple[dict[str, dict[str, Observed]], str | None]:
    settings = config.services[service]
    driver = open_driver(service, settings.driver, settings.options)
    driver.unmarked_ok = not known  # a service never started: its root is read as the plug would adopt it
    try:
        status = driver.available()
        if not status and not known and "missing" in status.reason:
            return {}, None  # created empty at start
        if not status:
            return {}, status.reason
        scanner = Scanner(driver, {name: f.path for name, f in settings.folders.items()},
                          config.data / "sync" / f"{service}.hashes", writes=False)  # the plug writes it
        try:
            return {folder: {p: obs for p, obs, _ in scanner.below(folder) if obs is not None}
                    for folder in settings.folders}, None
        except DriverError as exc:
            return {}, str(exc)
    finally:
        driver.close()


def plan(config: Config, space: SpaceClient | None) -> Preview:
    """What the referee would decide now, changing nothing: per folder the plan of one pass over everything, and
    the services left out (with the reason). Without a ``space`` (Onitu is not running), nothing is agreed yet."""
    ledger = Ledger()
    known = set()
    if space is not None:
        ledger.load(space)
        known = {t[1] for t in space.read_all((tuples.KNOWN, None))}
    listings, unavailable = {}, {}
    for service in config.services:
        listings[service], reason = _listings(config, service, service in known)
        if reason:
            unavailable[service] = reason
    rules, when = settings.rules(config), datetime.now(UTC)
    plans = {}
    for folder in config.folders:
        replicas = [Replica(s, listings[s].get(folder, {}), ledger.held.get((s, folder), {}), unavailable.get(s))
                    for s in rules.services(folder)]
        plans[folder] = reconcile(ledger.agreed.get(folder, {}), replicas, when=when, routing=rules.routing(folder),
                                  deletion_threshold=config.sync.deletion_threshold,
                                  deletion_minimum=config.sync.deletion_minimum)
    return Preview(plans, unavailable)
