"""A new user's first run, as the issue tells it: ``onitu start`` with no config serves the page with no folders;
``onitu folder add`` and ``onitu service add`` (no ``-c``: the running instance's config is found) make a folder
sync; the CLI's answers read well piped into another program."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.harness import free_port
from tests.supervision.harness import kill_started


def start(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    """``onitu start`` with no config, its output in ``tmp_path/start.log``; and a deadline for it to be up."""
    with open(tmp_path / "start.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "onitu.cli", "start"], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, time.monotonic() + 60


def page(tmp_path: Path, deadline: float) -> tuple[str, httpx.Client]:
    """The page address ``onitu start`` printed, and a client of its API once it answers."""
    log = tmp_path / "start.log"
    while "#token=" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    url = next(line.split("the page is at ")[1] for line in log.read_text().splitlines() if "#token=" in line)
    base, token = url.strip().split("/#token=")
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        try:
            if api.get("/api/folders").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    return url, api


def test_first_run_needs_no_yaml(tmp_path):
    port = free_port()
    env = {**os.environ, "ONITU_DATA": str(tmp_path / "data"), "ONITU_API_LISTEN": f"127.0.0.1:{port}"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def onitu(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "onitu.cli", *args], cwd=elsewhere, env=env, timeout=60,
                              capture_output=True, text=True)

    proc, deadline = start(tmp_path, env)
    try:
        url, api = page(tmp_path, deadline)
        assert url.startswith(f"http://127.0.0.1:{port}/#token=")
        assert (tmp_path / "data" / "onitu.yaml").exists()
        assert api.get("/api/folders").json() == {}
        assert onitu("open").stdout.strip() == url.strip()

        out = onitu("plan")
        assert out.returncode == 0 and "no folders configured: nothing to do" in out.stdout, out.stderr
        assert onitu("folder", "add", "docs", "-o", "blacklist=[\"*.tmp\"]").returncode == 0
        for name, where in (("one", ["-o", f"root={tmp_path / 'one'}"]), ("two", ["--root", str(tmp_path / "two")])):
            out = onitu("service", "add", name, "--driver", "local", *where, "-o", "settle=0.1", "--folder", "docs")
            assert out.returncode == 0, out.stdout + out.stderr
        both = onitu("service", "add", "four", "-d", "local", "--root", "/x", "-o", "root=/y", "--folder", "docs")
        assert both.returncode == 2 and "disagree" in both.stderr, both.stderr
        bad = onitu("service", "add", "three", "--driver", "local", "--folder", "docs")
        assert bad.returncode == 2 and "services.three.options.root: missing required option" in bad.stderr
        while not (tmp_path / "two").exists() and time.monotonic() < deadline + 60:
            time.sleep(0.1)
        time.sleep(1.0)
        (tmp_path / "one" / "hello.txt").write_text("first file")
        (tmp_path / "one" / "skip.tmp").write_text("ignored")
        while not (tmp_path / "two" / "hello.txt").exists() and time.monotonic() < deadline + 120:
            time.sleep(0.1)
        assert (tmp_path / "two" / "hello.txt").read_text() == "first file"
        assert not (tmp_path / "two" / "skip.tmp").exists()

        status = onitu("status")  # piped: no column is cut
        assert status.returncode == 0 and "secondary" in status.stdout and "plug-two" in status.stdout
        assert "in sync, nothing to do" in onitu("plan").stdout
        assert onitu("stop").returncode == 0
        assert proc.wait(30) == 0
    finally:
        kill_started(proc, str(tmp_path))


def test_a_tcp_client_without_keys_is_told_what_to_pass(tmp_path):
    code = ("from pathlib import Path\nfrom onitu.space import connect\n"
            f"connect('tcp://127.0.0.1:{free_port()}', data_dir=Path({str(tmp_path)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "needs the server's public key" in out.stderr and "insecure=True" in out.stderr, out.stderr


def test_first_run_when_the_default_port_is_taken(tmp_path):
    """Another Onitu (here: any listener) holds the default port: the first start picks the next free one, says
    so, and prints a page address that answers with this Onitu's token."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {**os.environ, "ONITU_DATA": str(tmp_path / "data"), "ONITU_API_LISTEN": f"127.0.0.1:{port}"}
    proc, deadline = start(tmp_path, env)
    try:
        url, api = page(tmp_path, deadline)
        assert f"127.0.0.1:{port} is in use" in (tmp_path / "start.log").read_text()
        assert not url.startswith(f"http://127.0.0.1:{port}/")
        assert 'api: {listen: "127.0.0.1:' in (tmp_path / "data" / "onitu.yaml").read_text()
        assert api.get("/api/folders").json() == {}
        subprocess.run([sys.executable, "-m", "onitu.cli", "stop"], env=env, timeout=60, check=True)
        assert proc.wait(30) == 0
    finally:
        taken.close()
        kill_started(proc, str(tmp_path))
