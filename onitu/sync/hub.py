"""``onitu plan``: the decision the referee would take now, computed without changing anything.

Every replica is listed through its driver (files are hashed unless the plug's hash cache knows them, and the cache
is not written), the agreed and held versions are read from the space when it runs, and the folders are reconciled
as one pass each.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from onitu.config import Config
from onitu.sync import tuples
from onitu.sync.decide.plan import Observed, Plan, Replica
from onitu.sync.decide.reconcile import reconcile
from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import DriverError
from onitu.sync.plug.scanner import Scanner
from onitu.sync.state.ledger import Ledger


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
                          config.data / "sync" / f"{service}.hashes")
        try:
            return {folder: {p: obs for p, obs, _ in scanner.below(folder) if obs is not None}
                    for folder in settings.folders}, None
        except DriverError as exc:
            return {}, str(exc)
    finally:
        driver.close()


def preview(config: Config, space: Any | None) -> tuple[dict[str, Plan], dict[str, str]]:
    """Per folder the plan of one pass over everything, and the services left out (with the reason)."""
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
    rules, when = config.rules(), datetime.now(UTC)
    plans = {}
    for folder in config.folders:
        replicas = [Replica(s, listings[s].get(folder, {}), ledger.held.get((s, folder), {}), unavailable.get(s))
                    for s in rules.services(folder)]
        plans[folder] = reconcile(ledger.agreed.get(folder, {}), replicas, when=when, routing=rules.routing(folder),
                                  deletion_threshold=config.sync.deletion_threshold,
                                  deletion_minimum=config.sync.deletion_minimum)
    return plans, unavailable
