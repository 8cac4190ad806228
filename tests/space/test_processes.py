"""Clients in separate processes against one real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from onitu.space import connect


def spawn(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.procs", *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_blocked_takes_in_two_processes_are_served_exactly_once(server):
    n = 200
    takers = [spawn("taker", server.ipc, str(n // 2)) for _ in range(2)]
    time.sleep(0.3)  # both are blocked in take now
    with connect(server.ipc) as space:
        for i in range(n):
            space.write(["job", i])
        got = []
        for proc in takers:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            got += [tuple(json.loads(line)) for line in out.splitlines()]
        assert sorted(got) == [("job", i) for i in range(n)]
        assert space.read_all(["job", None]) == []


def test_session_death_deletes_its_tuples_and_emits_delete(server):
    with connect(server.ipc) as space:
        note = space.notify(["delete"], ["lease", None])
        proc = spawn("leaser", server.ipc, "1.0")
        assert space.read_all(["lease", None]) == [("lease", proc.pid)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.monotonic()
        event = note.next(timeout=5)
        assert (event.kind, event.tuple) == ("delete", ("lease", proc.pid))
        assert time.monotonic() - t0 < 2.5  # TTL 1 s, plus the keepalive that was already sent
        assert space.read_all(["lease", None]) == []
        note.close()
