"""The referee's side of the hub client's commands (``approve``, ``reject``, ``resolve``) and of ``onitu status``.

A client writes ``(REQUEST, id, body)`` (:mod:`onitu.sync.hub`); the referee carries it out between two decisions
(so it never races one) and answers ``(REPLY, id, result)``. It also publishes its view of every folder and service
as a ``STATUS`` tuple that ``onitu status`` reads.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from onitu.space.errors import SpaceError
from onitu.sync import hub, tuples
from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import Copy
from onitu.sync.state.plugs import NOT_STARTED

if TYPE_CHECKING:
    from onitu.sync.referee import Referee

log = logging.getLogger(__name__)

OWED_EVERY = 5.0  # seconds between counts of what an unavailable replica will be sent


class Commands:
    """Requests from the hub client, carried out on the referee; the published status."""

    def __init__(self, referee: Referee) -> None:
        self.referee = referee
        self._owed_cache: dict[tuple[str, str], tuple[float, int, int]] = {}  # (folder, service) -> when, files, size

    def poll(self) -> None:
        """Answer pending requests and publish the status."""
        space = self.referee.space
        for tup in space.read_all((tuples.REQUEST, None, None)):
            with contextlib.suppress(SpaceError):
                space.take(tup, timeout=0)
                try:
                    result = self.handle(tup[2])
                except (ValueError, TypeError, KeyError) as exc:
                    result = {"ok": False, "error": str(exc)}
                space.write((tuples.REPLY, tup[1], result), 120.0)
        status = self.summary()
        ops: list[tuple] = [("write", (tuples.STATUS, status), 5.0)]
        if space.read_all((tuples.STATUS, None)):
            ops.insert(0, ("take", (tuples.STATUS, None)))
        with contextlib.suppress(SpaceError):
            space.batch(ops)

    def handle(self, body: Any) -> dict[str, Any]:
        """Carry out one request."""
        if not isinstance(body, dict) or body.get("op") not in ("approve", "reject", "resolve"):
            raise ValueError("unknown request")
        folder = body.get("folder")
        if folder is not None and folder not in self.referee.folders:
            raise ValueError(f"unknown folder {folder!r}")
        if body["op"] == "resolve":
            patterns = body.get("patterns", [body.get("pattern")])
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError("patterns must be a list of globs")
            return self.resolve(patterns, str(body.get("keep", "")), folder)
        return self.release(body["op"] == "approve", folder, body.get("service"))

    def query(self, rid: Any, folder: Any, directory: Any, limit: Any) -> None:
        """Answer a :data:`~onitu.sync.tuples.QUERY` (the entries of one directory) with a ``REPLY``."""
        try:
            if folder not in self.referee.folders:
                raise ValueError(f"unknown folder {folder!r}")
            if not isinstance(directory, str) or type(limit) is not int or limit < 1:
                raise ValueError("a files query needs a directory and a positive limit")
            result = self.files(folder, directory, limit)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("files query on %r/%r refused: %s", folder, directory, exc)
            result = {"ok": False, "error": str(exc)}
        with contextlib.suppress(SpaceError):
            self.referee.space.write((tuples.REPLY, rid, result), 120.0)

    def files(self, folder: str, directory: str, limit: int) -> dict[str, Any]:
        """The agreed entries directly in ``directory`` (see :func:`onitu.sync.hub.files`), from the index of
        paths: the cost follows the directory's entries."""
        ref = self.referee
        agreed = ref.ledger.agreed[folder]
        found = []
        for path in ref.tree.children(folder, directory, agreed.is_live):
            meta = agreed[path]
            found.append(hub.file_entry(meta.to_wire(), ref.ledger.services(agreed.holders(path))))
        return {"ok": True, "files": hub.sorted_entries(found, limit)}

    # -- held deletions -------------------------------------------------------------------------------------------

    def release(self, approve: bool, folder: str | None, service: str | None) -> dict[str, Any]:
        """Carry out (approve) or undo (reject: the files are copied back) deletions held for approval."""
        ref = self.referee
        done = []
        for held_folder, deleter in ref.awaiting.held_keys(folder, service):
            if approve:
                states = ref.states(held_folder)
                if "wait" in states.values():
                    raise ValueError(f"{held_folder}: a replica is still being listed; try again in a moment")
                paths = ref.awaiting.release((held_folder, deleter))
                ref.pass_paths(held_folder, sorted(paths), states, approved=deleter)
            else:
                paths = ref.awaiting.release((held_folder, deleter))
                held = ref.ledger.held[deleter, held_folder]
                for path in paths:  # as if it never had them: they are copied back to it
                    if path in held and ref.mirror.get(deleter, held_folder, path) is None:
                        ref.ledger.hold(deleter, held_folder, path, None)
                ref.ledger.commit(ref.space)
                ref.decide_again(held_folder, paths)
            ref.deletions.judged(deleter, held_folder)
            done.append({"folder": held_folder, "service": deleter, "paths": len(paths)})
        return {"ok": True, "released": done}

    # -- conflicts ------------------------------------------------------------------------------------------------

    def resolve(self, patterns: list[str], keep: str, folder: str | None) -> dict[str, Any]:
        """Keep one side, or both, of the conflicts whose original or conflict path matches one of ``patterns``."""
        if keep not in tuples.KEEP:
            raise ValueError(f"keep must be one of {', '.join(tuples.KEEP)}")
        ref = self.referee
        matched = ref.awaiting.conflicts_matching(patterns, folder)
        for f, conflict, info in matched:
            if ref.orders.is_busy(f, conflict) or ref.orders.is_busy(f, str(info.get("path"))):
                raise ValueError(f"{f}/{conflict}: a transfer is under way; try again in a moment")
        for f, conflict, info in matched:
            meta = ref.ledger.agreed[f].get(conflict)
            if keep == "conflict" and meta is not None and not meta.tombstone:
                self._promote(f, conflict, str(info["path"]), meta)
            if keep != "both" and meta is not None and not meta.tombstone:
                ref.ledger.agree(f, FileMeta(conflict, meta.kind, version=meta.version.bump("onitu"),
                                             tombstone=True, mtime_ns=meta.mtime_ns))
                ref.decide_again(f, [conflict])
            ref.awaiting.resolved(f, conflict)
        ref.ledger.commit(ref.space)
        return {"ok": True, "resolved": [[f, c, i.get("path")] for f, c, i in matched]}

    def _promote(self, folder: str, conflict: str, path: str, meta: FileMeta) -> None:
        """Make the conflict copy's content the agreed version of ``path``, copied to every replica from it."""
        ref = self.referee
        current = ref.ledger.agreed[folder].get(path)
        version = (current.version.merge(meta.version) if current else meta.version).bump("onitu")
        new = FileMeta(path, "file", meta.size, meta.sha256, version, False, meta.mtime_ns)
        ref.ledger.agree(folder, new)
        services = ref.folders[folder]
        holders = [s for s in services if (o := ref.mirror.get(s, folder, conflict)) is not None
                   and o.sha256 == meta.sha256]
        if not holders:
            raise ValueError(f"{folder}/{conflict}: no live replica holds the conflict copy")
        copies = []
        for service in services:
            if ref.plugs.state(service, folder) is None and ref.rules.selects(service, folder, path, meta.size):
                now = ref.mirror.get(service, folder, path)
                copies.append((folder, Copy(path, service, tuple(holders), meta.sha256, meta.size,
                                            now.content_id if now else None, conflict)))
        ref.orders.send(copies)

    # -- status ---------------------------------------------------------------------------------------------------

    def _owed(self, folder: str, service: str) -> tuple[int, int]:
        """Files and bytes agreed in ``folder`` that ``service`` must hold and does not (counted at most every
        OWED_EVERY seconds: a walk of the folder's records)."""
        when, files, size = self._owed_cache.get((folder, service), (0.0, 0, 0))
        if time.monotonic() - when < OWED_EVERY:
            return files, size
        ref = self.referee
        agreed, bit, files, size = ref.ledger.agreed[folder], ref.ledger.bit(service), 0, 0
        for path in agreed:
            if agreed.holders(path) & bit or not agreed.is_live(path):
                continue
            meta = agreed[path]
            if meta.kind == "file" and ref.rules.selects(service, folder, path, meta.size):
                files, size = files + 1, size + meta.size
        self._owed_cache[folder, service] = (time.monotonic(), files, size)
        return files, size

    def summary(self) -> dict[str, Any]:
        """Per folder and service: state, files and bytes pending, lag (seconds since the oldest order under way
        was sent); conflicts and held deletions per folder; bytes copied per service since the referee started."""
        ref = self.referee
        pending = ref.orders.pending()
        now = time.time()
        folders = {}
        for folder, services in ref.folders.items():
            rows = {}
            for service in services:
                state = ref.plugs.state(service, folder)
                files, size, oldest = pending.get((folder, service), (0, 0, now))
                if state not in (None, "wait"):  # no orders go to it: what it will be sent once back
                    files, size = self._owed(folder, service)
                label = ("listing" if state == "wait" else "starting" if state == NOT_STARTED
                         else f"unavailable: {state}" if state else "syncing" if files else "in sync")
                rows[service] = {"state": label, "files": files, "bytes": size,
                                 "held": len(ref.awaiting.held_paths(folder, service)),
                                 "lag": round(now - oldest, 3)}
            folders[folder] = {"services": rows, "conflicts": ref.awaiting.conflict_count(folder),
                               "undecided": ref.undecided(folder)}
        return {"folders": folders, "transferred": dict(ref.orders.transferred)}
