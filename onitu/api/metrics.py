"""``/metrics`` for Prometheus: the hub, the space, the processes and make, read afresh at every scrape.

Nothing is counted in the API process itself (it may restart at any time): every value comes from what the
referee, the plugs, the space and the watchdog publish, through the same queries as the API's routes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from onitu.make.overview import builds
from onitu.space.errors import SpaceError
from onitu.sync import hub

if TYPE_CHECKING:
    from onitu.api.context import Context

PAIR = ("folder", "service")
TAKING_PART = ("in sync", "syncing", "listing")  # the states of onitu status in which a replica takes part


def _hub(overview: dict[str, Any]) -> Iterator[Metric]:
    sync = overview.get("sync", {})
    gauges = {name: GaugeMetricFamily(f"onitu_sync_{name}", doc, labels=PAIR) for name, doc in (
        ("pending_files", "Files of the orders under way to the replica"),
        ("pending_bytes", "Bytes of the orders under way to the replica"),
        ("lag_seconds", "Seconds since the replica's oldest order under way was sent (0: in sync)"),
        ("available", "1 if the replica takes part in decisions (its plug runs and its root is there), else 0"),
        ("held_deletions", "Paths held for approval because of the replica's deletions"),
        ("skipped", "Paths of the replica left out or refused (onitu status --skipped says which and why)"))}
    conflicts = GaugeMetricFamily("onitu_sync_conflicts", "Conflict copies waiting to be resolved", labels=["folder"])
    for folder, info in sync.get("folders", {}).items():
        conflicts.add_metric([folder], info.get("conflicts", 0))
        for service, row in info.get("services", {}).items():
            labels = [folder, service]
            gauges["pending_files"].add_metric(labels, row.get("files", 0))
            gauges["pending_bytes"].add_metric(labels, row.get("bytes", 0))
            gauges["lag_seconds"].add_metric(labels, row.get("lag", 0.0))
            gauges["available"].add_metric(labels, int(row.get("state") in TAKING_PART))
            gauges["held_deletions"].add_metric(labels, row.get("held", 0))
            gauges["skipped"].add_metric(labels, row.get("skipped", 0))
    transferred = CounterMetricFamily("onitu_sync_transferred_bytes", "Bytes copied to the replica by orders done "
                                      "since the referee started", labels=["service"])
    for service, size in sync.get("transferred", {}).items():
        transferred.add_metric([service], size)
    yield from (*gauges.values(), conflicts, transferred)


def _processes(overview: dict[str, Any]) -> Iterator[Metric]:
    restarts = CounterMetricFamily("onitu_process_restarts", "Restarts of the process since the watchdog started",
                                   labels=["name"])
    up = GaugeMetricFamily("onitu_process_running", "1 if the process is running", labels=["name", "role"])
    for proc in overview.get("processes", []):
        restarts.add_metric([proc["name"]], proc.get("restarts") or 0)
        up.add_metric([proc["name"], str(proc.get("role") or "")], 1 if proc.get("state") == "running" else 0)
    epoch = GaugeMetricFamily("onitu_space_epoch", "The space pair's epoch: it grows by one at each failover")
    epoch.add_metric([], overview.get("space", {}).get("epoch") or 0)
    failovers = CounterMetricFamily("onitu_space_failovers", "Promotions of the space's secondary (its primary was "
                                    "lost)")
    failovers.add_metric([], overview.get("space", {}).get("failovers") or 0)
    yield from (restarts, up, epoch, failovers)


def _space(stats: dict[str, Any]) -> Iterator[Metric]:
    """Every number the space reports, as ``onitu_space_<name>`` (a mapping of numbers gets a ``key`` label);
    requests by operation as a counter labelled ``op``, and the SQLite commit latency as a summary."""
    by_op = CounterMetricFamily("onitu_space_requests_by_op", "Requests the space primary answered, by operation",
                                labels=["op"])
    for op, count in sorted((stats.pop("requests_by_op", None) or {}).items()):
        by_op.add_metric([str(op)], count)
    commit = SummaryMetricFamily("onitu_space_commit_seconds", "Time the space primary spent committing to SQLite",
                                 count_value=stats.get("commits", 0), sum_value=stats.pop("commit_seconds", 0.0))
    yield from (by_op, commit)
    for name, value in sorted(stats.items()):
        metric = "onitu_space_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            family = GaugeMetricFamily(metric, f"The space's {name}")
            family.add_metric([], value)
            yield family
        elif isinstance(value, dict) and value and all(isinstance(v, int | float) for v in value.values()):
            family = GaugeMetricFamily(metric, f"The space's {name}, by key", labels=["key"])
            for key, number in value.items():
                family.add_metric([str(key)], number)
            yield family


def _make(found: dict[str, Any]) -> Iterator[Metric]:
    tasks = GaugeMetricFamily("onitu_make_tasks", "Make targets of the builds on the space, by state",
                              labels=["build", "state"])
    for build in found["builds"]:
        for state in ("done", "running", "waiting"):
            tasks.add_metric([str(build["build"]), state], build[state])
    slots = GaugeMetricFamily("onitu_make_worker_slots", "Slots of the make workers", labels=["worker"])
    for worker in found["workers"]:
        slots.add_metric([str(worker["id"])], worker.get("slots") or 0)
    yield from (tasks, slots)


class _Scrape:
    """A collector that reads everything once per scrape."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        space = self.ctx.space
        overview = hub.overview(self.ctx.config, space)
        yield from _processes(overview)
        yield from _hub(overview)
        with contextlib.suppress(SpaceError):
            yield from _space(space.stats())
        yield from _make(builds(space))


def route(ctx: Context) -> Callable[[], Response]:
    """The ``/metrics`` endpoint."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(ctx))

    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return metrics
