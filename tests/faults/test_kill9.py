"""kill -9 the space server at random moments while two clients write and take; nothing acknowledged is lost.

``ONITU_SOAK=N`` runs N kills instead of the default.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter

from onitu.space import connect
from tests.faults.invariants import check_nothing_lost, tally
from tests.helpers import ServerProcess

KILLS = int(os.environ.get("ONITU_SOAK", "8"))


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

    written, taken = tally(logs)
    with connect(srv.ipc) as space:
        final = Counter(space.read_all(["d", None, None]))
    srv.stop()
    check_nothing_lost(written, taken, final)
