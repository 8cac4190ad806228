"""The plug: one service's link to the hub (``python -m onitu.sync.plug --service NAME``).

It registers the service in the space (a session-leased tuple, so a dead plug is visible at once), reports what
changes in its replica, carries out the orders the referee addresses to it, and serves its files to the other
plugs (:mod:`onitu.sync.plug.transfer`): contents go plug to plug, never through the space.

Reports are observations, not events: for each changed path, what is there now (kind, sha256, size, mtime) or None.
A full listing (at start, after an event overflow, periodically, when the root comes back, and when a restarted
referee asks) is sent whole, so the referee can tell what disappeared; orders carried out while it is being made
are accounted for in it. Reports and results leave through one ordered outbox (:mod:`onitu.sync.plug.outbox`).

An order holds up to 64 actions. They are carried out (copies in a pool, everything else in order, never two on
the same path at once), then the order is taken together with its result in one atomic batch: a plug killed
half-way finds the order again when it restarts and carries it out again, and an action that finds its work
already done succeeds. Every action is guarded by the content the referee based it on: the plug checks that this is
what it last reported there, and has the driver check that the entry still has the fingerprint it had then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from onitu.chunks import TransferError
from onitu.config import Config
from onitu.heartbeat import Liveness
from onitu.space.client import SpaceClient
from onitu.space.errors import EventsLost, SpaceError
from onitu.sync import tuples
from onitu.sync.decide.plan import (
    TREE,
    Action,
    Copy,
    Delete,
    KeepConflict,
    Mkdir,
    Move,
    Observed,
    paths_of,
    service_of,
    tree_guard,
)
from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import CHUNK, Availability, Changed, ChangeEvent, Driver, DriverError
from onitu.sync.plug.outbox import Outbox
from onitu.sync.plug.running import OrderRun, Running
from onitu.sync.plug.scanner import Scanner
from onitu.sync.plug.transfer import fetch, serve_files
from onitu.sync.process import serve
from onitu.sync.state.tree import Indexed

log = logging.getLogger(__name__)

TRANSFERS = 8  # copies carried out at once
REPORT_SIZE = 1000  # entries per report tuple
SESSION_TTL = 3.0
REGISTRATION_CHECK = 2.0  # seconds between checks that the plug tuple is still in the space
EVENTS = 2000  # watcher events handled together (one report per folder)
SOURCES_TTL = 1.0  # seconds the other plugs' tuples are reused before they are read again


class Plug:
    """Runs one service: watch, report, obey, serve."""

    def __init__(self, config: Config, service: str, space: SpaceClient) -> None:
        if service not in config.services:
            raise ValueError(f"no service {service!r} in {config.source or 'the config'}")
        settings = config.services[service]
        self.service, self.space, self.config = service, space, config
        self.driver: Driver = open_driver(service, settings.driver, settings.options)
        state = config.data / "sync"
        state.mkdir(parents=True, exist_ok=True)
        self.scanner = Scanner(self.driver, {name: f.path for name, f in settings.folders.items()},
                               state / f"{service}.hashes")
        self.id = secrets.token_hex(8)
        self.known: dict[str, Indexed] = {folder: Indexed() for folder in settings.folders}
        self.events: queue.SimpleQueue[ChangeEvent] = queue.SimpleQueue()
        self.status = Availability(False, "starting")
        self.server = serve_files(self.driver, self._serves)
        self.pool = ThreadPoolExecutor(TRANSFERS, thread_name_prefix=f"onitu-copy-{service}")
        self.progress: dict[str, list[int]] = {}  # path -> [bytes done, size], transfers under way
        self._lock = threading.RLock()  # known, reports' sequence numbers, the plug tuple
        self._seq = 0
        self._entry: Any = None
        self._stop = threading.Event()
        self.outbox = Outbox(space, self._stop, service)
        self._scanning: set[tuple[str, str]] | None = None  # (folder, path) of orders carried out during a listing
        self._listed = threading.Event()  # the first listing is sent: orders are checked against what it saw
        self._plugs: tuple[float, list[tuple]] = (0.0, [])  # when read, the plug tuples

    # -- start and registration -----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Initialise the root the first time the service is seen; afterwards a root without marker is refused."""
        status = self.driver.available()
        known = bool(self.space.read_all((tuples.KNOWN, self.service)))
        if not status and not known:
            try:
                self.driver.initialise()
            except DriverError as exc:
                log.error("%s: cannot initialise the root: %s", self.service, exc)
                return
            log.info("%s: initialised %s", self.service, self.driver.root)
        if not known and self.driver.available():
            self.space.write((tuples.KNOWN, self.service))

    def _info(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.server.endpoint, "key": self.server.key,
                "secret": self.server.secret, "available": bool(self.status), "reason": self.status.reason,
                "pid": os.getpid(), "root": self.driver.root}

    def _set_status(self, status: Availability) -> None:
        with self._lock:
            if self._entry is not None and bool(status) == bool(self.status) and status.reason == self.status.reason:
                return
            self.status = status
            if not status:
                log.warning("%s: unavailable: %s", self.service, status.reason)
            ops: list[tuple] = [("write", (tuples.PLUG, self.service, self._info()), "session")]
            if self._entry is not None:
                ops.insert(0, ("take", (tuples.PLUG, self.service, {**self._entry})))
            self.space.batch(ops)
            self._entry = self._info()

    def _check_registered(self) -> None:
        """Write the plug tuple again if it is gone: it is session-leased, and a session that expired while the
        space failed over takes it along, which left a live plug invisible to the referee for good."""
        with self._lock, contextlib.suppress(SpaceError):
            if self._entry is not None and not any(
                    isinstance(t[2], dict) and t[2].get("id") == self.id
                    for t in self.space.read_all((tuples.PLUG, self.service, None))):
                log.warning("%s: the plug tuple was gone (its session expired); registering again", self.service)
                self._entry = None
                self._set_status(self.status)

    def _serves(self, path: str) -> bool:
        return self.scanner.locate(path) is not None

    # -- reports --------------------------------------------------------------------------------------------------

    def _send(self, folder: str, entries: list[tuple[str, Observed | None]], scan: str | None = None) -> None:
        """Queue reports in the outbox (sent by the next :meth:`Outbox.flush`)."""
        with self._lock:
            parts = [entries[i:i + REPORT_SIZE] for i in range(0, len(entries), REPORT_SIZE)] or [[]]
            ops = []
            for n, part in enumerate(parts):
                kind = scan if scan is None else "begin" if n == 0 else "part"
                self._seq += 1
                body = {"folder": folder, "scan": kind,
                        "entries": [[path, tuples.obs_to_wire(obs)] for path, obs in part]}
                ops.append(("write", (tuples.REPORT, self.service, self.id, self._seq, body), None))
            if scan is not None:
                self._seq += 1
                end = {"folder": folder, "scan": "end", "entries": []}
                ops.append(("write", (tuples.REPORT, self.service, self.id, self._seq, end), None))
            for op in ops:
                self.outbox.put([op])

    def full_scan(self) -> None:
        """List every folder and send the whole of it (entries being written keep their last known state)."""
        status = self.driver.available()
        if not status:
            self._set_status(status)
            return
        listings = {}
        with self._lock:
            self._scanning = set()
        try:
            for folder, known in self.known.items():
                seen = Indexed()
                for path, obs, settled in self.scanner.below(folder):
                    if obs is not None:
                        seen[path] = obs
                    elif not settled and path in known:
                        seen[path] = known[path]
                listings[folder] = seen
        except DriverError as exc:
            with self._lock:
                self._scanning = None
            self._set_status(self.driver.available() or Availability(False, str(exc)))
            return
        self._set_status(status)
        with self._lock:
            self._amend_listings(listings)
            self._replace_listings(listings)
        self.outbox.flush()
        self._listed.set()
        self.scanner.save()

    def _amend_listings(self, listings: dict[str, Indexed]) -> None:
        """What orders carried out while the listing was made left at their paths, instead of what the listing saw
        before (it would report a file just copied here as deleted: its creation is not reported by the watcher)."""
        touched, self._scanning = self._scanning or set(), None
        for folder, path in touched:
            seen, known = listings[folder], self.known[folder]
            for gone in seen.at_and_below(path):
                del seen[gone]
            for found in known.at_and_below(path):
                seen[found] = known[found]

    def _replace_listings(self, listings: dict[str, Indexed]) -> None:
        for folder, seen in listings.items():
            for gone in self.known[folder].keys() - seen.keys():
                self.scanner.forget(folder, gone)
            self.known[folder] = seen
            self._send(folder, sorted(seen.items()), scan="full")

    def _changed(self, folder: str, paths: Iterable[str]) -> None:
        """Report the paths whose observation differs from the one last reported."""
        with self._lock:
            self._changed_locked(folder, paths)
        self.outbox.flush()

    def _changed_locked(self, folder: str, paths: Iterable[str]) -> None:
        known, entries = self.known[folder], []
        for path in sorted(set(paths)):
            obs = self.scanner.stat(folder, path)
            if obs is None and path in known and self._unsettled(folder, path):
                continue  # being written: the watcher reports it once it settles
            if obs is not None:
                entries += self._below_locked(folder, path, obs)
            if known.get(path) != obs:
                if obs is None:
                    for below in known.at_and_below(path):
                        del known[below]
                        self.scanner.forget(folder, below)
                        entries.append((below, None))
                else:
                    known[path] = obs
                    entries.append((path, obs))
        if entries:
            self._send(folder, entries)

    def _below_locked(self, folder: str, path: str, obs: Observed) -> list[tuple[str, Observed | None]]:
        """What changed below ``path``, now ``obs``, since last reported (``known`` updated): a directory's entries
        as they are (those being written keep their last known state), and what was below a directory and is gone
        (the directory was deleted or replaced and made again, or replaced by a file, between two looks)."""
        known, entries, present = self.known[folder], [], set()
        if obs.kind == "dir":
            for below, child, _ in self.scanner.below(folder, path):
                present.add(below)
                if child is not None and known.get(below) != child:
                    known[below] = child
                    entries.append((below, child))
        before = known.get(path)
        if before is not None and before.kind == "dir":
            for gone in [p for p in known.paths.below(path, known.__contains__) if p not in present]:
                del known[gone]
                self.scanner.forget(folder, gone)
                entries.append((gone, None))
        return entries

    def _unsettled(self, folder: str, path: str) -> bool:
        with contextlib.suppress(DriverError):
            stat = self.driver.stat(self.scanner.where(folder, path))
            return stat is not None and not self.driver.settled(stat, time.time_ns())
        return False

    def handle(self, events: Iterable[ChangeEvent]) -> None:
        """Turn watcher events into reports: the paths they name are looked at together (one report per folder),
        rescans and outages in their place among them."""
        touched: dict[str, set[str]] = {}
        for event in events:
            if event.kind in ("rescan", "unavailable"):
                self._report_touched(touched)
                if event.kind == "rescan":
                    self.full_scan()
                else:
                    self._set_status(Availability(False, event.dest or "unavailable"))
                continue
            for path in (event.path, event.dest) if event.kind == "moved" else (event.path,):
                if path is None:
                    continue
                where = self.scanner.locate(path)
                if where is not None:
                    touched.setdefault(where[0], set()).add(where[1])
                for folder in self.scanner.tops(path):  # a folder's own directory moved or deleted
                    touched.setdefault(folder, set()).update(self.known[folder])
        self._report_touched(touched)

    def _report_touched(self, touched: dict[str, set[str]]) -> None:
        for folder, paths in touched.items():
            self._changed(folder, paths)
        touched.clear()

    # -- orders ---------------------------------------------------------------------------------------------------

    def _orders(self) -> None:
        """Carry out orders as they come: copies in a pool, everything else in order, each after the copies
        addressed to the same path are done."""
        pattern = (re.compile(r"^sync\.(order|rescan)$"), self.service, None, None)
        while not self._listed.wait(0.2):
            if self._stop.is_set():
                return
        stream = self.space.notify("write", pattern)
        started: set[Any] = set()
        running = Running()
        backlog = self.space.read_all(pattern)
        while not self._stop.is_set():
            for tup in sorted(backlog, key=lambda t: (t[0] != tuples.RESCAN, t[2])):
                if tup[0] == tuples.RESCAN:
                    with contextlib.suppress(SpaceError):
                        self.space.take(tup, timeout=0)
                        self.events.put(ChangeEvent("rescan"))
                    continue
                if tup[2] in started:
                    continue
                started.add(tup[2])
                self._start(tup, running)
            backlog = []
            try:
                event = stream.next(0.5)
                backlog.append(event.tuple)
            except TimeoutError:
                pass
            except EventsLost:  # the space restarted and cannot replay them: what was missed is still there
                log.info("%s: the order stream lost events; reading the orders waiting in the space", self.service)
                with contextlib.suppress(SpaceError):
                    stream.close()
                stream = self.space.notify("write", pattern)
                backlog = self.space.read_all(pattern)
            running.prune()

    def _start(self, tup: tuple, running: Running) -> None:
        _, _, oid, body = tup
        try:
            if not isinstance(body, dict) or not isinstance(body.get("folder"), str):
                raise ValueError("an order body must be a mapping with a folder")
            actions = [tuples.action_from_wire(a) for a in body.get("actions") or ()]
            metas = body.get("metas")
            if not actions or not isinstance(metas, list) or len(metas) != len(actions):
                raise ValueError("an order needs actions, and as many metas")
            if body["folder"] not in self.known or any(service_of(a) != self.service for a in actions):
                raise ValueError(f"order for folder {body['folder']!r:.60} or service not served here")
        except (ValueError, TypeError) as exc:
            log.warning("%s: dropping a malformed order %r: %s", self.service, oid, exc)
            with contextlib.suppress(SpaceError):
                self.space.take(tup, timeout=0)
            return
        order = OrderRun(tup, body["folder"], actions)
        for n, action in enumerate(actions):
            for future in running.overlapping(paths_of(action)[0]):
                future.result()  # an action never overtakes an earlier one on the same paths
            if isinstance(action, Copy):
                running.add(action.path, self.pool.submit(self._carry_out, order, n))
            else:
                self._carry_out(order, n)

    def _carry_out(self, order: OrderRun, n: int) -> None:
        """Carry out action ``n`` of ``order``; the order's result is sent once its last action is done."""
        folder, action = order.folder, order.actions[n]
        try:
            written: Observed | None = None
            if isinstance(action, Copy):
                written = self._copy(folder, action)
                touched = [action.path]
            else:
                touched = self._execute(folder, action)
            result: dict[str, Any] = {"ok": True, "error": ""}
        except Exception as exc:  # whatever went wrong, the order must get its result
            if not isinstance(exc, DriverError | TransferError | OSError):
                log.exception("%s: order %s: %s", self.service, order.tup[2], action)
            log.info("%s: order %s failed: %s", self.service, order.tup[2], exc)
            touched = list(paths_of(action))
            result = {"ok": False, "error": str(exc)[:2000]}
        with self._lock:
            known = self.known[folder]
            if self._scanning is not None and result["ok"]:
                self._scanning.update((folder, path) for path in touched)
            # After a success, what the action left is ours and complete, settled or not. After a failure nothing
            # was changed by us: someone else may be writing there (that is often why it failed), so a file is
            # reported only once settled, as for any change (reporting it half-written would ship and agree on it).
            for path in touched if result["ok"] else ():
                obs = written or self.scanner.stat(folder, path, settled=False)
                if obs is None:
                    for below in known.at_and_below(path):
                        del known[below]
                        order.touched.append(below)
                else:
                    order.touched += [p for p, _ in self._below_locked(folder, path, obs)]
                    known[path] = obs
                order.touched.append(path)
            if not result["ok"]:
                with contextlib.suppress(DriverError):  # the watcher reports it, or the root's outage, later
                    self._changed_locked(folder, touched)
            order.results[n] = result
            order.left -= 1
            if not order.left:
                self._finish(order)
        self.outbox.flush()

    def _finish(self, order: OrderRun) -> None:
        """Queue an order's result (with the lock held): taken with it, so a plug killed before this finds the
        order again; numbered like the reports, and telling what its paths hold as last reported, so the referee,
        which applies both in order, never goes back to an older state."""
        known, seen = self.known[order.folder], set()
        entries = []
        for path in order.touched:
            if path not in seen:
                seen.add(path)
                entries.append([path, tuples.obs_to_wire(known.get(path))])
        self._seq += 1
        body = {**order.tup[3], "order": order.tup[2], "results": order.results, "entries": entries}
        self.outbox.put([("take", (*order.tup[:3], None)),  # by id: matching the whole body costs as much as it
                         ("write", (tuples.DONE, self.service, self.id, self._seq, body), None)])

    def _execute(self, folder: str, action: Action) -> list[str]:
        """Carry out one order other than a copy; the paths it touched (relative to the folder)."""
        at = self.scanner.where
        if isinstance(action, Mkdir):
            self.driver.mkdir(at(folder, action.path))
            return [action.path]
        if isinstance(action, Delete):
            current = self.driver.stat(at(folder, action.path))
            if current is not None:
                self.driver.delete(at(folder, action.path), replaces=self._expect(folder, action.path, action.replaces))
            return [action.path]
        assert isinstance(action, Move | KeepConflict)
        src, dst = (action.src, action.dst) if isinstance(action, Move) else (action.path, action.conflict)
        if self.driver.stat(at(folder, src)) is not None or self.driver.stat(at(folder, dst)) is None:
            self.driver.move(at(folder, src), at(folder, dst), replaces=self._expect(folder, src, action.replaces))
        return [src, dst]

    def _expect_tree(self, folder: str, path: str, guard: str) -> str:
        """The driver's guard for moving the directory ``path`` whole: its fingerprint, if this plug last reported
        exactly the subtree the referee decided on (``guard``, see tree_guard) and the driver lists nothing else
        below it now (a file made there and not reported yet). Otherwise the order is stale (:class:`Changed`)."""
        with self._lock:
            known = self.known[folder]
            reported = {p: known[p] for p in known.at_and_below(path)}
        tree = {p[len(path) + 1:]: obs.content for p, obs in reported.items()}  # the directory itself at ''
        where = self.scanner.where(folder, path)
        if path not in reported or tree_guard(tree) != guard:
            raise self.driver.error(Changed, where, "changed since the hub decided to move it (what it holds was "
                                                    "reported otherwise since)")
        listed = {(stat.path, stat.fingerprint) for stat in self.driver.list(where)}
        expected = {(self.scanner.where(folder, p), obs.fingerprint) for p, obs in reported.items() if p != path}
        if listed != expected:
            unseen = min(listed ^ expected)[0]
            raise self.driver.error(Changed, where, f"holds what the hub has not seen yet ({unseen}); not moved")
        return reported[path].fingerprint

    def _expect(self, folder: str, path: str, guard: str | None) -> str | None:
        """The driver's guard for an order decided on ``guard`` (the content the referee saw at ``path``, see
        Observed.guard): the fingerprint of that content as this plug last reported it. If it reported something
        else since, the order is stale (:class:`Changed`); so is one about a file changed and not reported yet
        (the driver finds another fingerprint)."""
        if guard is None:
            return None
        if guard.startswith(TREE):
            return self._expect_tree(folder, path, guard)
        with self._lock:
            known = self.known[folder].get(path)
        if known is None or known.guard != guard:
            raise self.driver.error(Changed, self.scanner.where(folder, path),
                                    f"changed since the hub decided (expected {guard[:16]}, last reported "
                                    f"{known.guard[:16] if known else 'nothing'})")
        return known.fingerprint

    def _copy(self, folder: str, action: Copy) -> Observed | None:
        """Carry out a copy; what it wrote (None: it was there already)."""
        where = self.scanner.where(folder, action.path)
        current = self.scanner.stat(folder, action.path, settled=False)
        if current is not None and current.sha256 == action.sha256:
            return None  # already there (a repeated order, or the same content arrived otherwise)
        sources = self._sources(action.sources)
        failure: Exception | None = None if sources else TransferError(
            f"{self.service}: {action.path}: no live source among {', '.join(action.sources)}")
        for source in sources:
            # a file of one chunk arrives whole or not at all: nothing of it can be staged to resume from
            offset = self.driver.partial(where) if action.size > CHUNK else 0
            self.progress[where] = [offset, action.size]

            def advance(n: int, where: str = where) -> None:
                self.progress[where][0] += n
            chunks = fetch(source, source["service"], self._source_path(source, folder, action), offset, action.size,
                           advance, lambda source=source: self._still_serving(source))
            try:
                written = self.driver.write(where, chunks, expected_sha256=action.sha256, resume_from=offset,
                                            replaces=self._expect(folder, action.path, action.replaces))
                self.scanner.remember(written, action.sha256)
                return Observed("file", action.sha256, written.size, written.mtime_ns, written.fingerprint)
            except TransferError as exc:  # this source failed: keep what arrived, try the next one
                failure = exc
                self._plugs = (0.0, [])  # and read the plug tuples again next time (it may have restarted)
            except DriverError as exc:
                if offset and "sha256" in str(exc):
                    self.driver.discard(where)  # the staged prefix was of another version
                raise
            finally:
                self.progress.pop(where, None)
        if not self.driver.partial(where):  # nothing arrived, now or in a try interrupted by a kill:
            self.driver.discard(where)  # no empty staging file is left behind (its path may never be copied again)
        raise failure or TransferError(f"{self.service}: {action.path}: no source could send it")

    def _source_path(self, source: dict[str, Any], folder: str, action: Copy) -> str:
        """The path of the file on the source's side (its folders may live elsewhere under its root)."""
        path = action.source_path or action.path
        top = source["folders"].get(folder, "")
        return f"{top}/{path}" if top else path

    def _still_serving(self, source: dict[str, Any]) -> bool:
        """Whether the plug ``source`` describes still runs: its session-leased tuple is there (True while the
        space cannot tell: a failover is not a dead source)."""
        try:
            found = self.space.read_all((tuples.PLUG, source["service"], None))
        except SpaceError:
            return True
        return any(isinstance(t[2], dict) and t[2].get("id") == source.get("id") for t in found)

    def _sources(self, names: Iterable[str]) -> list[dict[str, Any]]:
        read, plugs = self._plugs
        if time.monotonic() - read > SOURCES_TTL:  # a source found gone is skipped by fetch, then re-read here
            plugs = self.space.read_all((tuples.PLUG, None, None))
            self._plugs = (time.monotonic(), plugs)
        found = []
        for name in names:
            for tup in (t for t in plugs if t[1] == name):
                info = tup[2]
                if isinstance(info, dict) and info.get("available") and name in self.config.services:
                    folders = {f: c.path for f, c in self.config.services[name].folders.items()}
                    found.append({**info, "service": name, "folders": folders})
        return found

    # -- main loop ------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM)."""
        self.prepare()
        self._set_status(self.driver.available() or Availability(False, "starting"))
        liveness = Liveness(lambda: {"service": self.service, "available": bool(self.status)})
        self.scanner.beat = liveness.beat
        self.driver.watch(self.events.put, scan_interval=self.config.sync.scan_interval)
        orders = threading.Thread(target=self._guard(self._orders), name="onitu-orders", daemon=True)
        orders.start()
        last_progress = last_check = 0.0
        while not self._stop.is_set():
            liveness.beat()
            if time.monotonic() - last_check > REGISTRATION_CHECK:
                last_check = time.monotonic()
                self._check_registered()
            try:
                events = [self.events.get(timeout=0.2)]
                with contextlib.suppress(queue.Empty):
                    while len(events) < EVENTS:
                        events.append(self.events.get_nowait())
                self.handle(events)
            except queue.Empty:
                pass
            except DriverError as exc:
                log.warning("%s: %s", self.service, exc)
            if time.monotonic() - last_progress > 1.0 and self.progress:
                last_progress = time.monotonic()
                self._publish_progress()
            if not orders.is_alive() and not self._stop.is_set():
                raise RuntimeError(f"{self.service}: the order thread died")
        liveness.close()

    def _guard(self, target: Any) -> Any:
        def run() -> None:
            try:
                target()
            except Exception:
                log.exception("%s: order loop failed", self.service)
        return run

    def _publish_progress(self) -> None:
        body = {path: list(done) for path, done in list(self.progress.items())[:50]}
        with contextlib.suppress(SpaceError):
            self.space.write((tuples.PROGRESS, self.service, body), 2.0)

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stop.set()

    def close(self) -> None:
        """Release the driver, the chunk server and the pool."""
        self.driver.close()
        self.scanner.save()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.server.close()


def main(argv: list[str] | None = None) -> int:
    """Run the plug of one service of the config."""
    return serve("onitu-plug", __doc__, lambda config, space, args: Plug(config, args.service, space), argv,
                 SESSION_TTL, lambda parser: parser.add_argument("--service", required=True))


if __name__ == "__main__":
    raise SystemExit(main())
