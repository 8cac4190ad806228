"""The plug: one service's link to the hub (``python -m onitu.sync.plug --service NAME``).

It registers the service in the space (a session-leased tuple, so a dead plug is visible at once), reports what
changes in its replica (:mod:`onitu.sync.plug.reports`), carries out the orders the referee addresses to it
(:mod:`onitu.sync.plug.orders`, in a thread of their own), and serves its files to the other plugs
(:mod:`onitu.sync.plug.transfer`): contents go plug to plug, never through the space.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import threading
import time
from typing import Any

from onitu.config import Config
from onitu.heartbeat import Liveness
from onitu.space.client import SpaceClient
from onitu.space.errors import SpaceError
from onitu.sync import tuples
from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import Availability, ChangeEvent, Driver, DriverError
from onitu.sync.plug.orders import OrderTaker
from onitu.sync.plug.outbox import Outbox
from onitu.sync.plug.reports import Reporter
from onitu.sync.plug.scanner import Scanner
from onitu.sync.plug.transfer import serve_files
from onitu.sync.process import serve

log = logging.getLogger(__name__)

SESSION_TTL = 3.0
REGISTRATION_CHECK = 2.0  # seconds between checks that the plug tuple is still in the space
EVENTS = 2000  # watcher events handled together (one report per folder)
PROGRESS_LEASE = 3.0  # seconds the published transfers live unless published again
SKIPPED_LEASE = 15.0  # seconds the published skipped map lives unless published again
SKIPPED_SHOWN = 1000  # skipped paths published per folder (all are counted)


class Plug:
    """Runs one service: watch, report, obey, serve."""

    def __init__(self, config: Config, service: str, space: SpaceClient) -> None:
        if service not in config.services:
            raise ValueError(f"no service {service!r} in {config.source or 'the config'}")
        settings = config.services[service]
        self.service, self.space, self.config = service, space, config
        self.status = Availability(False, "starting")
        state = config.data / "sync"
        state.mkdir(parents=True, exist_ok=True)
        self.driver: Driver = open_driver(service, settings.driver, settings.options, state)
        # answering heartbeats from here (a driver that cannot open is a failure to start): loading the hash cache
        # of a million files, or a remote root's first check, may outlast the watchdog's startup grace when busy
        self.liveness = Liveness(lambda: {"service": self.service, "available": bool(self.status)})
        self.scanner = Scanner(self.driver, {name: f.path for name, f in settings.folders.items()},
                               state / f"{service}.hashes")
        self.id = secrets.token_hex(8)
        self.events: queue.SimpleQueue[ChangeEvent] = queue.SimpleQueue()
        self.server = serve_files(self.driver, self._serves)
        self._lock = threading.RLock()  # what was reported, reports' sequence numbers, the plug tuple
        self._entry: Any = None
        self._progress_shown = False  # transfers are published: take them once none is under way
        self._stop = threading.Event()
        self.outbox = Outbox(space, self._stop, service)
        self.reporter = Reporter(service, self.id, settings.folders, self.driver, self.scanner, self.outbox,
                                 self._lock, self._set_status)
        self.taker = OrderTaker(config, service, space, self.driver, self.scanner, self.reporter, self.events.put,
                                self._stop)

    # -- start and registration -----------------------------------------------------------------------------------

    def prepare(self) -> Availability:
        """Initialise the root the first time the service is seen (afterwards a root without marker is refused);
        whether it is available now, and why not."""
        status = self.driver.available()
        known = bool(self.space.read_all((tuples.KNOWN, self.service)))
        if not status and not known:
            try:
                self.driver.initialise()
            except DriverError as exc:
                log.error("%s: cannot initialise the root: %s", self.service, exc)
                return status
            log.info("%s: initialised %s", self.service, self.driver.root)
            status = self.driver.available()
        if not known and status:
            self.space.write((tuples.KNOWN, self.service))
        return status

    def _info(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.server.endpoint, "key": self.server.key,
                "secret": self.server.secret, "available": bool(self.status), "reason": self.status.reason,
                "pid": os.getpid(), "root": self.driver.root, "rows": True,  # reads orders as rows
                # where its folders live under its root: other plugs fetch from it by these, not by their own
                # config, which may predate this service (added while Onitu runs)
                "folders": {f: c.path for f, c in self.config.services[self.service].folders.items()}}

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

    # -- main loop ------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM)."""
        liveness = self.liveness
        orders = threading.Thread(target=self._logged(self.taker.run), name="onitu-orders", daemon=True)

        def beat() -> None:  # alive while both loops are: a listing of minutes must not hide a dead order loop
            if orders.is_alive() or self._stop.is_set():
                liveness.beat()
        self.scanner.beat = self.outbox.beat = beat
        self._set_status(self.prepare())  # the reason shown at once (a server refusing a password may take seconds)
        self.driver.watch(self.events.put, scan_interval=self.config.sync.scan_interval)
        orders.start()
        last_progress = last_check = last_skipped = 0.0
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
                self.reporter.handle(events)
            except queue.Empty:
                pass
            except DriverError as exc:
                log.warning("%s: %s", self.service, exc)
            if time.monotonic() - last_progress > 1.0:
                last_progress = time.monotonic()
                self._publish_progress()
                last_skipped = self._publish_skipped(last_skipped)
            if not orders.is_alive() and not self._stop.is_set():
                raise RuntimeError(f"{self.service}: the order thread died")
        liveness.close()

    def _logged(self, target: Any) -> Any:
        """``target``, logging what it raises (the main loop notices the thread ended); what it raises once the plug
        was asked to stop (its space went away for good: a revoked agent) is how it stops, not a failure."""
        def run() -> None:
            try:
                target()
            except Exception as exc:
                if self._stop.is_set():
                    log.debug("%s: the order loop stopped: %s", self.service, exc)
                else:
                    log.exception("%s: order loop failed", self.service)
        return run

    def _publish_progress(self) -> None:
        """Publish the transfers under way (the last published is taken once none is: a finished transfer does
        not linger in ``onitu status``)."""
        body = {path: list(done) for path, done in list(self.taker.progress.items())[:50]}
        if body or self._progress_shown:
            taken = self._replace(tuples.PROGRESS, body or None, PROGRESS_LEASE)
            self._progress_shown = bool(body) or not taken

    def _replace(self, tag: str, body: dict[str, Any] | None, lease: float) -> bool:
        """Put ``(tag, service, body)`` in the space in place of the one there (none if ``body`` is None); whether
        the space took it."""
        ops: list[tuple] = [] if body is None else [("write", (tag, self.service, body), lease)]
        try:
            if self.space.read_all((tag, self.service, None)):
                ops.insert(0, ("take", (tag, self.service, None)))
            if ops:
                self.space.batch(ops)
            return True
        except SpaceError:
            return False

    def _publish_skipped(self, last: float) -> float:
        """Publish the driver's skipped map, per folder, when it changed and again before its lease runs out;
        when it was last published."""
        skipped = self.driver.skipped
        changed = skipped.changed.is_set()
        if not changed and time.monotonic() - last < SKIPPED_LEASE / 3:
            return last
        skipped.changed.clear()
        folders: dict[str, dict[str, Any]] = {}
        for path, info in sorted(skipped.snapshot().items()):
            where = self.scanner.locate(path)
            if where is not None:
                entry = folders.setdefault(where[0], {"count": 0, "paths": {}})
                entry["count"] += 1
                if len(entry["paths"]) < SKIPPED_SHOWN:
                    entry["paths"][where[1]] = info
        if not folders and not changed:
            return last
        if self._replace(tuples.SKIPPED, {"folders": folders}, SKIPPED_LEASE):
            return time.monotonic()
        skipped.changed.set()  # not published: try again next turn
        return last

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stop.set()

    def close(self) -> None:
        """Release the driver, the chunk server and the pool."""
        self.driver.close()
        self.reporter.save()
        self.taker.close()
        self.server.close()


def main(argv: list[str] | None = None) -> int:
    """Run the plug of one service of the config."""
    return serve("onitu-plug", __doc__, lambda config, space, args: Plug(config, args.service, space), argv,
                 SESSION_TTL, lambda parser: parser.add_argument("--service", required=True))


if __name__ == "__main__":
    raise SystemExit(main())
