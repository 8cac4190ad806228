"""Live events over SSE against a running hub: a change seen within a second, and ``Last-Event-ID`` resuming what
was missed across a kill -9 of the API process and of the space primary (a failover)."""

from __future__ import annotations

import os
import signal
import time

from tests.api.harness import ApiHub, Stream


def changed(path: str):
    return lambda name, data: name == "file.changed" and data["path"] == path


def test_a_change_arrives_live(api_hub: ApiHub):
    stream = Stream(api_hub)
    try:
        name, first, data = stream.expect(lambda n, d: True, what="hello")
        assert name == "hello" and data == {"resumed": False} and ":" in first
        a = api_hub.roots["a"]
        latencies = []
        for n in range(5):
            written = time.monotonic()
            (a / f"live-{n}.txt").write_text(f"live {n}")
            stream.expect(changed(f"live-{n}.txt"), what=f"live-{n}.txt")
            latencies.append(time.monotonic() - written)
            stream.expect(lambda n_, d, p=f"live-{n}.txt": n_ == "file.changed" and d["path"] == p
                          and len(d["holders"]) == 3, what="held everywhere")
        print(f"\nfile written -> file.changed event: median {sorted(latencies)[2] * 1000:.0f} ms "
              f"(local driver settle 0.1 s)")
        for name in ("transfer.started", "transfer.done"):  # each replica's copies, from its orders (as rows)
            for service in ("b", "c"):
                _, _, data = stream.expect(lambda n, d, name=name, s=service: n == name and d["service"] == s
                                           and "live-4.txt" in d["paths"], what=f"{name} on {service}")
                assert data["folder"] and data["files"] >= 1 and data["bytes"] >= len("live 4")
    finally:
        stream.close()


def _resume_after(api_hub: ApiHub, outage, path: str) -> Stream:
    """Read events, drop the stream, run ``outage`` while a file changes, then resume from the last id."""
    stream = Stream(api_hub)
    stream.expect(lambda n, d: n == "hello")
    (api_hub.roots["a"] / f"{path}.before").write_text("seen live")
    stream.expect(changed(f"{path}.before"))
    last = stream.last_id
    stream.close()
    outage()
    (api_hub.roots["b"] / path).write_text("written while nobody listened")
    api_hub.wait_converged(expect=lambda t: path in t)
    api_hub.wait_api()
    resumed = Stream(api_hub, last_id=last)
    name, _, data = resumed.expect(lambda n, d: True, what="hello")
    assert (name, data) == ("hello", {"resumed": True})
    resumed.expect(changed(path), what=f"the missed change of {path}")
    return resumed


def test_resume_across_an_api_restart(api_hub: ApiHub):
    before = api_hub.process("api")

    def kill_api() -> None:
        os.kill(before["pid"], signal.SIGKILL)
        api_hub.wait(lambda s: any(p["name"] == "api" and p["pid"] != before["pid"] and p["state"] == "running"
                                   for p in s["processes"]), 30, "the API restarted")

    stream = _resume_after(api_hub, kill_api, "missed-by-api.txt")
    try:  # the watcher saw its own process restart, and says so
        _, _, data = stream.expect(lambda n, d: n == "process.restarted" and d["name"] == "api",
                                   what="the API's restart")
        assert data["restarts"] >= 1
    finally:
        stream.close()


def test_resume_across_a_failover(api_hub: ApiHub):
    status = api_hub.status()
    primary, epoch = status["primary"], status["epoch"]

    def kill_primary() -> None:
        os.kill(api_hub.primary_pid(), signal.SIGKILL)
        api_hub.wait(lambda s: s.get("epoch", 0) > epoch and s.get("primary") != primary, 30, "failover")

    stream = _resume_after(api_hub, kill_primary, "missed-by-failover.txt")
    try:
        _, _, data = stream.expect(lambda n, d: n == "failover", what="the failover event")
        assert data["epoch"] > epoch and data["previous"] == primary
    finally:
        stream.close()
    api_hub.wait_api()
    with api_hub.client() as api:
        api_hub.wait_for(lambda: "onitu_space_failovers_total 1.0" in api.get("/metrics").text, 30, "a failover")


def test_a_resume_point_the_space_no_longer_holds_gets_resync(api_hub: ApiHub):
    stream = Stream(api_hub, last_id="1:1")
    try:
        name, _, data = stream.expect(lambda n, d: True)
        assert (name, data) == ("resync", {"resumed": False})
    finally:
        stream.close()
