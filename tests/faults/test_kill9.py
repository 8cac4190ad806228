"""kill -9 the space server at random moments while two clients write and take; nothing acknowledged is lost.

``ONITU_SOAK=N`` runs N kills instead of the default.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from onitu.space import connect
from tests.helpers import ServerProcess

KILLS = int(os.environ.get("ONITU_SOAK", "8"))


def read_log(path: Path) -> list[list]:
    # The last line may be cut short if the client was mid-write when stopped; it was never acknowledged then.
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def test_acknowledged_writes_and_takes_survive_kill9(tmp_path):
    data = tmp_path / "space"
    data.mkdir()
    srv = ServerProcess(data).start()
    stop = tmp_path / "stop"
    logs = [tmp_path / f"client{i}.log" for i in range(2)]
    clients = [subprocess.Popen([sys.executable, "-m", "tests.procs", "churn", srv.ipc, f"c{i}", str(logs[i]),
                                 str(stop)], stdout=subprocess.PIPE, text=True) for i in range(2)]
    for proc in clients:
        assert proc.stdout.readline().strip() == "ready"
    rng = random.Random(7)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.6))
            srv.kill9()
            time.sleep(rng.uniform(0.0, 0.3))
            srv.start()
        time.sleep(0.5)
    finally:
        stop.touch()
        for proc in clients:
            proc.wait(timeout=120)
    assert all(proc.returncode == 0 for proc in clients)

    written, taken = Counter(), Counter()
    for log in logs:
        for kind, *tup in read_log(log):
            (written if kind == "w" else taken)[tuple(tup)] += 1
    with connect(srv.ipc) as space:
        final = Counter(space.read_all(["d", None, None]))
    srv.stop()

    assert sum(written.values()) > 100, "the clients did too little work to prove anything"
    assert all(n == 1 for n in taken.values()), f"taken twice: {[t for t, n in taken.items() if n > 1]}"
    assert all(n == 1 for n in final.values()), f"stored twice: {[t for t, n in final.items() if n > 1]}"
    assert not set(final) & set(taken), "an acknowledged take came back"
    lost = set(written) - set(final) - set(taken)
    assert not lost, f"acknowledged writes lost: {sorted(lost)[:10]}"
    assert set(final) | set(taken) == set(written), "tuples nobody wrote"
