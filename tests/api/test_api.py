"""The REST API against a running hub, with a real HTTP client: every route, the token, bad bodies, bulk resolve,
held deletions, and folder and service edits applied to the running hub without a restart."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.api.harness import ApiHub
from tests.sync.hub import tree


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listings_of(hub: ApiHub, services: tuple[str, ...]) -> int:
    """How many full listings of ``services`` the referee received so far."""
    text = (hub.data / "run" / "referee.log").read_text()
    return sum(text.count(f"{s}/{f}: listing of") for s in services for f in ("docs", "vault"))


def test_every_api_route_and_metrics_need_the_token(api_hub: ApiHub):
    schema = httpx.get(f"{api_hub.url}/openapi.json").json()
    routes = [(path, method) for path, ops in schema["paths"].items() for method in ops]
    assert len(routes) >= 20 and all(path.startswith("/api/") for path, _ in routes)
    for path, method in [*routes, ("/metrics", "get")]:
        url = api_hub.url + path.replace("{folder}", "docs").replace("{name}", "docs")
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-the-right-length"},
                        {"Authorization": api_hub.token}):
            answer = httpx.request(method.upper(), url, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert "DATA/api.token" in answer.json()["detail"]
    assert (api_hub.data / "api.token").stat().st_mode & 0o777 == 0o600
    page = httpx.get(api_hub.url + "/")  # the page itself holds no data: it asks with the token it was given
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_status_shows_processes_space_and_every_replica(api_hub: ApiHub):
    with api_hub.client() as api:
        started = time.perf_counter()
        status = api.get("/api/status").json()
        elapsed = time.perf_counter() - started
    names = {p["name"]: p for p in status["processes"]}
    assert {"space-a", "space-b", "referee", "plug-a", "plug-b", "plug-c", "api"} <= set(names)
    assert names["api"]["state"] == "running" and names["api"]["restarts"] >= 0
    assert status["space"]["mode"] == "paired" and status["space"]["epoch"] >= 1
    assert set(status["sync"]["folders"]) == {"docs", "vault"}
    row = status["sync"]["folders"]["docs"]["services"]["a"]
    assert set(row) >= {"state", "files", "bytes", "held", "lag"}
    print(f"\nGET /api/status: {elapsed * 1000:.1f} ms")


def test_status_counts_and_lists_what_a_replica_skips(api_hub: ApiHub):
    """Issue 12, item 9: the API's status has what `onitu status --skipped` shows."""
    link = api_hub.vaults["a"] / "planted-link"
    link.symlink_to("/etc")
    try:
        with api_hub.client() as api:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = api.get("/api/status").json()
                if status["sync"]["folders"]["vault"]["services"]["a"].get("skipped") == 1:
                    break
                time.sleep(0.3)
        assert status["sync"]["folders"]["vault"]["services"]["a"]["skipped"] == 1, status["sync"]
        assert "symbolic link" in status["sync"]["skipped"]["a"]["vault"]["planted-link"]["reason"]
        with api_hub.client() as api:
            assert 'onitu_sync_skipped{folder="vault",service="a"} 1.0' in api.get("/metrics").text
    finally:
        link.unlink()


def records(hub: ApiHub, pattern: str) -> str:
    """The hub's records of the paths of ``docs`` that ``pattern`` finds, as `onitu space ls` prints them."""
    template = json.dumps(["sync.meta", {"$regex": f"^docs/{pattern}"}, None])
    out = hub.cli("space", "ls", template, check=False)
    return out.stdout + out.stderr


def test_space_commands_find_the_hubs_space_as_every_command_finds_its_config(api_hub: ApiHub):
    """`onitu space ls -c onitu.yaml` (or with onitu.yaml in the current directory) reads the space of that config's
    data directory, as `onitu status` does: a user need not know `--data`."""
    stats = json.loads(api_hub.cli("space", "stats", "--json").stdout)
    assert stats["tuples"] > 0
    here = subprocess.run([sys.executable, "-m", "onitu.cli", "space", "ls", '["sync.plug", null, null]'],
                          capture_output=True, text=True, timeout=60, cwd=api_hub.tmp,
                          env={k: v for k, v in os.environ.items() if k not in ("ONITU_DATA", "ONITU_SPACE")})
    assert here.returncode == 0, here.stderr
    assert {json.loads(line)[1] for line in here.stdout.splitlines()} == {"a", "b", "c"}


def test_files_conflicts_and_bulk_resolve(api_hub: ApiHub):
    a, b, c = api_hub.roots.values()
    (a / "notes").mkdir()
    for name in ("one.txt", "two.txt"):
        (a / "notes" / name).write_text("v1")
    api_hub.wait_converged(expect=lambda t: "notes/two.txt" in t)
    with api_hub.client() as api:
        def both_everywhere() -> bool:
            answer = api.get("/api/folders/docs/files", params={"dir": "notes"})
            assert answer.status_code == 200, answer.text
            return len(answer.json()) == 2 and all(len(f["holders"]) == 3 for f in answer.json())
        try:
            api_hub.wait_for(both_everywhere, what="notes/ listed with its two files on a, b and c")
        except AssertionError as exc:  # once seen in CI only: the holders and other versions recorded tell why
            raise AssertionError(f"{exc}\n{records(api_hub, 'notes/')}") from None
        listed = api.get("/api/folders/docs/files", params={"dir": "notes"}).json()
        assert [(f["name"], f["kind"], f["size"], f["sha256"]) for f in listed] == [
            ("one.txt", "file", 2, sha(b"v1")), ("two.txt", "file", 2, sha(b"v1"))]
        assert sorted(listed[0]["holders"]) == ["a", "b", "c"] and listed[0]["version"]
        root = api.get("/api/folders/docs/files").json()
        assert {"name": "notes", "kind": "dir"}.items() <= next(f for f in root if f["name"] == "notes").items()
        assert api.get("/api/folders/nope/files").status_code == 404

        plug_b = api_hub.pid("plug-b")
        os.kill(plug_b, signal.SIGSTOP)  # b misses a's new versions, then changes its own: two conflicts
        try:
            for name in ("one.txt", "two.txt"):
                (a / "notes" / name).write_text("a's version")
            api_hub.wait_for(lambda: all((c / "notes" / n).read_text() == "a's version"
                                         for n in ("one.txt", "two.txt")))
            for name in ("one.txt", "two.txt"):
                (b / "notes" / name).write_text("b's version")
        finally:
            os.kill(plug_b, signal.SIGCONT)
        api_hub.wait_for(lambda: len(api.get("/api/conflicts").json()) == 2, what="two conflicts")
        conflicts = api.get("/api/conflicts").json()
        assert sorted(x["path"] for x in conflicts) == ["notes/one.txt", "notes/two.txt"]

        bad = api.post("/api/conflicts/resolve", json={"paths": ["notes/one.txt"], "keep": "mine"})
        assert bad.status_code == 422 and "keep" in str(bad.json()["detail"])
        empty = api.post("/api/conflicts/resolve", json={"keep": "both"})
        assert empty.status_code == 422 and "paths (exact) or patterns" in str(empty.json()["detail"])
        assert api.post("/api/conflicts/resolve", json={"paths": ["x"], "keep": "both", "extra": 1}
                        ).status_code == 422

        def resolve() -> httpx.Response:
            return api.post("/api/conflicts/resolve", json={"paths": [x["conflict"] for x in conflicts],
                                                            "keep": "conflict"})
        resolved, deadline = resolve(), time.monotonic() + 30
        while resolved.status_code == 409 and "try again" in resolved.text and time.monotonic() < deadline:
            time.sleep(0.2)  # the conflict copies are still being copied: as the answer says
            resolved = resolve()
        assert resolved.status_code == 200, resolved.text
        assert sorted(r["path"] for r in resolved.json()) == ["notes/one.txt", "notes/two.txt"]
    api_hub.wait_converged(expect=lambda t: t["notes/one.txt"] == t["notes/two.txt"] == sha(b"b's version")
                           and not any(".conflict-" in p for p in t))


def test_held_deletions_listed_approved_and_rejected(api_hub: ApiHub):
    a, b, c = api_hub.vaults.values()
    for n in range(6):
        (a / f"v{n}.txt").write_text(f"vault {n}")
    api_hub.wait_for(lambda: all(len(tree(v)) == 6 for v in (a, b, c)), what="the vault everywhere")
    with api_hub.client() as api:
        for n in range(4):  # 4 of 6: over the threshold, held
            (b / f"v{n}.txt").unlink()
        api_hub.wait_for(lambda: api.get("/api/held").json() != [], what="held deletions")
        held = api.get("/api/held").json()
        assert [(h["folder"], h["service"], h["deleted"], h["count"]) for h in held] == [("vault", "b", 4, 4)]
        assert sorted(held[0]["paths"]) == [f"v{n}.txt" for n in range(4)]
        assert len(tree(a)) == 6
        assert api.post("/api/held/approve", json={"folder": "nope"}).status_code == 409
        rejected = api.post("/api/held/reject", json={"folder": "vault"}).json()
        assert rejected == [{"folder": "vault", "service": "b", "paths": 4}]
        api_hub.wait_for(lambda: all(len(tree(v)) == 6 for v in (a, b, c)), what="the files copied back")

        for n in range(4):
            (c / f"v{n}.txt").unlink()
        api_hub.wait_for(lambda: api.get("/api/held").json() != [], what="held again")
        approved = api.post("/api/held/approve", json={"service": "c"}).json()
        assert approved == [{"folder": "vault", "service": "c", "paths": 4}]
        api_hub.wait_for(lambda: all(len(tree(v)) == 2 for v in (a, b, c)), what="the deletions carried out")
        assert api.get("/api/held").json() == []


def test_plan_transfers_make_space_and_metrics(api_hub: ApiHub):
    with api_hub.client() as api:
        plan = api.get("/api/plan").json()
        assert set(plan["folders"]) == {"docs", "vault"} and plan["unavailable"] == {}
        assert all(set(p) == {"actions", "held"} for p in plan["folders"].values())
        assert isinstance(api.get("/api/transfers").json(), dict)
        assert api.get("/api/make").json() == {"builds": [], "workers": []}
        space = api.get("/api/space").json()
        assert space["tuples"] > 0
        drivers = api.get("/api/drivers").json()
        assert "root" in drivers["local"]["properties"] and "root" in drivers["local"]["required"]
        folders = api.get("/api/folders").json()
        assert folders["docs"]["services"] == {"a": "docs", "b": "docs", "c": "docs"}
        assert api.get("/api/services").json()["a"]["driver"] == "local"
        metrics = api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for line in ('onitu_sync_pending_files{folder="docs",service="a"}',
                 'onitu_sync_available{folder="docs",service="b"} 1.0',
                 'onitu_sync_lag_seconds{folder="vault",service="c"}', 'onitu_sync_conflicts{folder="docs"}',
                 'onitu_process_restarts_total{name="referee"}', "onitu_space_epoch", "onitu_space_tuples",
                 'onitu_space_requests_by_op_total{op="write"}', "onitu_space_commit_seconds_count",
                 "onitu_space_frames_over_cap 0.0", "onitu_space_connections "):
        assert line in text, line
    commits = re.search(r"^onitu_space_commit_seconds_count (\S+)$", text, re.M)
    spent = re.search(r"^onitu_space_commit_seconds_sum (\S+)$", text, re.M)
    assert commits and spent and float(commits[1]) > 0 and 0 < float(spent[1]) < float(commits[1])  # < 1 s each


def test_a_service_added_and_removed_while_running(api_hub: ApiHub):
    a = api_hub.roots["a"]
    (a / "before-d.txt").write_text("here before d")
    api_hub.wait_converged(expect=lambda t: "before-d.txt" in t)
    referee, listings = api_hub.pid("referee"), listings_of(api_hub, ("a", "b", "c"))
    d = api_hub.tmp / "d"
    body = {"name": "d", "driver": "local", "options": {"root": str(d)}, "folders": {"docs": "docs"}}
    with api_hub.client() as api:
        bad = api.post("/api/services", json={**body, "options": {"rot": str(d)}})
        assert bad.status_code == 422 and bad.json()["key"] == "services.d.options.rot", bad.json()
        assert bad.json()["problem"].startswith("unknown option (expected one of: root,"), bad.json()
        assert api.post("/api/services", json=body).status_code == 201
        assert api.post("/api/services", json=body).status_code == 409  # already there
        text = api_hub.config.read_text()
        assert "this comment must survive edits" in text and "# shared" in text
        api_hub.wait_for(lambda: (d / "docs" / "before-d.txt").exists(), 60, "the files reaching d")
        (d / "docs" / "from-d.txt").write_text("made on d")
        api_hub.wait_converged(expect=lambda t: "from-d.txt" in t)

        assert api.delete("/api/services/d").status_code == 200
        api_hub.wait(lambda s: not any(p["name"] == "plug-d" for p in s["processes"]), 30, "plug-d stopped")
        (a / "after-d.txt").write_text("d is gone")
        api_hub.wait_converged(expect=lambda t: "after-d.txt" in t)
        assert not (d / "docs" / "after-d.txt").exists()
        assert (d / "docs" / "before-d.txt").exists() and (d / "docs" / "from-d.txt").exists()  # nothing deleted
        assert "from-d.txt" in tree(a)
        assert api.delete("/api/services/d").status_code == 409
    assert api_hub.pid("referee") == referee  # applied in place: no restart, ...
    assert listings_of(api_hub, ("a", "b", "c")) == listings  # ... and no listing asked of a, b or c
    assert (api_hub.data / "run" / "referee.log").read_text().count("config changed") >= 2


@pytest.mark.parametrize("name", ["bad name", ""])
def test_a_bad_folder_name_is_refused_with_the_configs_message(api_hub: ApiHub, name: str):
    with api_hub.client() as api:
        answer = api.post("/api/folders", json={"name": name})
    assert answer.status_code == 422
    assert "letters, digits" in str(answer.json()) or "at least 1 character" in str(answer.json())


def test_a_running_make_build_is_shown(api_hub: ApiHub):
    """``onitu make`` on the hub's space: /api/make and /metrics show its targets done, running and waiting and
    the workers with their slots while it runs; once it ended, the build is gone."""
    from tests.make.harness import start_make, stop

    project = api_hub.tmp / "project"
    project.mkdir()
    targets = [f"t{n}" for n in range(8)]
    rules = "".join(f"{t}:\n\t@sleep 1; touch $@\n" for t in targets)
    (project / "Makefile").write_text(f"all: {' '.join(targets)}\n{rules}")
    build = start_make(project, "-j2", data=api_hub.data)
    seen: list[dict] = []
    try:
        with api_hub.client() as api:
            def running() -> bool:
                assert build.poll() is None, build.communicate()
                found = api.get("/api/make").json()
                seen.extend(found["builds"])
                return (any(b["running"] and b["done"] for b in found["builds"])
                        and any(w["busy"] for w in found["workers"]))
            api_hub.wait_for(running, 60, "the build to show targets done and running")
            found = api.get("/api/make").json()
            (shown,) = found["builds"]
            assert shown["dir"] == str(project) and 1 <= shown["running"] <= 2
            assert shown["total"] >= len(targets) and shown["waiting"] >= 1
            assert shown["done"] + shown["running"] + shown["waiting"] == shown["total"]
            (worker,) = found["workers"]
            assert worker["slots"] == 2 and 1 <= worker["busy"] <= 2
            metrics = api.get("/metrics").text
            for state in ("done", "running", "waiting"):
                assert f'onitu_make_tasks{{build="{shown["build"]}",state="{state}"}}' in metrics, state
            assert f'onitu_make_worker_slots{{worker="{worker["id"]}"}} 2.0' in metrics
            _, err = build.communicate(timeout=60)
            assert build.returncode == 0, err
            assert api.get("/api/make").json()["builds"] == []  # gone with its tuples
            assert 'onitu_make_tasks{' not in api.get("/metrics").text
    finally:
        stop(build)
    assert all((project / t).exists() for t in targets)
    done = [b["done"] for b in seen if b["total"]]
    assert done == sorted(done), done  # the count only grows


def test_a_folder_added_changed_and_removed_in_place(api_hub: ApiHub):
    """Folder and rule edits reach the running referee without a restart: its rules are re-evaluated from what it
    knows (no listing asked of the replicas it already had), and a removed folder deletes nothing."""
    a, b = (api_hub.services[n] / "extra" for n in ("a", "b"))
    referee = api_hub.pid("referee")
    a.mkdir()
    b.mkdir()
    with api_hub.client() as api:
        assert api.post("/api/folders", json={"name": "extra", "options": {"blacklist": ["*.tmp"]}}
                        ).status_code == 201
        for name in ("a", "b"):
            service = api.get("/api/services").json()[name]
            body = {"driver": "local", "options": {"root": str(api_hub.services[name]), "settle": 0.1},
                    "folders": {**service["folders"], "extra": {"path": "extra"}}}
            assert api.put(f"/api/services/{name}", json=body).status_code == 200, body
        (a / "keep.txt").write_text("kept")
        (a / "skip.tmp").write_text("left out by the rule")
        api_hub.wait_for(lambda: (b / "keep.txt").exists(), 60, "extra/keep.txt reaching b")
        assert not (b / "skip.tmp").exists()
        listings = listings_of(api_hub, ("a", "b", "c"))

        assert api.put("/api/folders/extra", json={"options": {}}).status_code == 200  # the rule is lifted
        api_hub.wait_for(lambda: (b / "skip.tmp").exists(), 30, "extra/skip.tmp reaching b once allowed")
        assert listings_of(api_hub, ("a", "b", "c")) == listings  # decided again from what the referee knew

        assert api.delete("/api/folders/extra").status_code == 200
        assert "extra" not in api.get("/api/folders").json()
        time.sleep(2)  # the referee and the restarted plugs take the change in
        (a / "after.txt").write_text("extra is no longer synced")
        time.sleep(3)
        assert not (b / "after.txt").exists()
        assert sorted(p.name for p in a.iterdir()) == ["after.txt", "keep.txt", "skip.tmp"]  # nothing deleted
        assert sorted(p.name for p in b.iterdir()) == ["keep.txt", "skip.tmp"]
    assert api_hub.pid("referee") == referee


def test_files_route_browses_one_directory_among_thousands(api_hub: ApiHub):
    """Thousands of files in many directories: the route lists one directory, with its subdirectories, exactly."""
    a = api_hub.roots["a"] / "many"
    for d in range(40):
        sub = a / f"d{d:02}"
        (sub / "deeper").mkdir(parents=True)
        for n in range(50):
            (sub / f"f{n:02}.txt").write_text(f"{d}/{n}")
        for n in range(10):
            (sub / "deeper" / f"g{n}.txt").write_text(f"deeper {d}/{n}")
    expected = [("deeper", "dir")] + [(f"f{n:02}.txt", "file") for n in range(50)]
    with api_hub.client() as api:
        def listed(directory: str) -> list[dict]:
            answer = api.get("/api/folders/docs/files", params={"dir": directory})
            assert answer.status_code == 200, answer.text
            return answer.json()

        api_hub.wait_for(lambda: len(listed("many")) == 40 and all(len(listed(f"many/d{d:02}")) == 51
                                                                   for d in (0, 17, 39)), 120, "2,400 files agreed")
        entries = listed("many/d17")
        assert [(e["name"], e["kind"]) for e in entries] == expected
        f03 = next(e for e in entries if e["name"] == "f03.txt")
        assert f03["path"] == "many/d17/f03.txt" and f03["size"] == len("17/3") and f03["sha256"] == sha(b"17/3")
        assert f03["version"] and "a" in f03["holders"]
        assert [e["name"] for e in listed("many")] == [f"d{d:02}" for d in range(40)]
        assert [e["name"] for e in listed("many/d17/deeper")] == [f"g{n}.txt" for n in range(10)]
        (a / "d17" / "f03.txt").unlink()
        api_hub.wait_for(lambda: "f03.txt" not in [e["name"] for e in listed("many/d17")], 30, "a deletion")
        assert len(api.get("/api/folders/docs/files", params={"dir": "many", "limit": 5}).json()) == 5


def test_metrics_after_real_activity(api_hub: ApiHub):
    """Every family the issue lists, with values that follow what happened: bytes copied, deletions held."""
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[str, list]:
        with api_hub.client() as api:
            text = api.get("/metrics").text
        return {f.name: f.samples for f in text_string_to_metric_families(text)}

    def value(families: dict, name: str, **labels: str) -> float:
        """The sample ``name`` with ``labels`` (0 if there is none yet)."""
        return next((s.value for samples in families.values() for s in samples
                     if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())), 0.0)

    before = scrape()
    vault = list(api_hub.vaults.values())
    (vault[0] / "big.bin").write_bytes(os.urandom(300_000))
    for n in range(6):
        (vault[0] / f"m{n}.txt").write_text(f"metrics {n}")
    api_hub.wait_for(lambda: all((v / "m5.txt").exists() and (v / "big.bin").exists() for v in vault))
    for n in range(6):
        (vault[2] / f"m{n}.txt").unlink()
    api_hub.wait_for(lambda: value(scrape(), "onitu_sync_held_deletions", folder="vault", service="c") == 6,
                     30, "6 deletions held in the metrics")
    after = scrape()
    for family in ("onitu_sync_pending_files", "onitu_sync_pending_bytes", "onitu_sync_lag_seconds",
                   "onitu_sync_available", "onitu_sync_conflicts", "onitu_sync_transferred_bytes",
                   "onitu_space_tuples", "onitu_space_sessions", "onitu_space_requests_by_op",
                   "onitu_space_commit_seconds", "onitu_process_restarts", "onitu_space_failovers",
                   "onitu_make_tasks"):
        assert family in after, family
    for service in ("b", "c"):  # big.bin and the six files were copied to them
        grown = (value(after, "onitu_sync_transferred_bytes_total", service=service)
                 - value(before, "onitu_sync_transferred_bytes_total", service=service))
        assert grown >= 300_000, (service, grown)
    assert after["onitu_sync_available"] and all(s.value == 1 for s in after["onitu_sync_available"])
    assert all(s.value >= 0 for s in after["onitu_sync_pending_files"] + after["onitu_sync_lag_seconds"])
    assert value(after, "onitu_sync_held_deletions", folder="vault", service="a") == 0
    assert value(after, "onitu_space_tuples") > 0 and value(after, "onitu_space_sessions") >= 5  # referee, plugs
    ops = {s.labels["op"]: s.value for s in after["onitu_space_requests_by_op"] if s.name.endswith("_total")}
    assert ops["batch"] > value(before, "onitu_space_requests_by_op_total", op="batch")  # the hub's commits
    assert len(ops) >= 4 and all(v > 0 for v in ops.values()), ops
    count = value(after, "onitu_space_commit_seconds_count")
    assert count > value(before, "onitu_space_commit_seconds_count")
    assert 0 < value(after, "onitu_space_commit_seconds_sum") / count < 0.5
    assert {s.labels["name"] for s in after["onitu_process_restarts"]} >= {"referee", "plug-a", "api"}
    with api_hub.client() as api:
        assert api.post("/api/held/reject", json={"folder": "vault"}).status_code == 200
    api_hub.wait_for(lambda: (vault[2] / "m5.txt").exists(), 30, "the deletions undone")
