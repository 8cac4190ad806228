"""A make worker whose key is revoked (issue 12, item 3) stops within a second or two, saying why, and the recipe
it was running is killed and its task goes back to the queue: retrying would only get the same refusal."""

from __future__ import annotations

import shutil
import subprocess
import time

import psutil

from onitu.space import auth, connect
from tests.helpers import ServerProcess
from tests.make.harness import ONITU, env_for, start_make, start_worker, stop, wait_for
from tests.make.test_faults import space_workers


def test_a_worker_whose_key_is_revoked_stops_and_its_task_is_freed(tmp_path):
    data, wdata, build = tmp_path / "data", tmp_path / "worker", tmp_path / "build"
    for d in (data, wdata, build):
        d.mkdir()
    server = ServerProcess(data, insecure=False).start()
    auth.create_pair(wdata, "client")  # the worker's own key pair, authorized on the space as "remote"
    shutil.copy(wdata / "keys" / "client.key", tmp_path / "remote.key")
    auth.allow(data, tmp_path / "remote.key")
    shutil.copy(data / "keys" / "server.key", wdata / "keys" / "server.key")
    (build / "Makefile").write_text("slow.txt:\n\t@echo $$$$ > pid.txt; sleep 60; echo done > $@\n")
    worker = start_worker("--space", server.tcp_endpoint, "--data", str(wdata), data=wdata)
    driver = None
    try:
        wait_for(lambda: len(space_workers(server)) == 1 or worker.poll() is not None, timeout=30,
                 what="the worker to register")
        driver = start_make(build, data=data)  # a worker is registered: the driver starts none of its own
        wait_for(lambda: (build / "pid.txt").exists() and (build / "pid.txt").read_text().strip(), timeout=30,
                 what="the remote worker to start the recipe")
        recipe = int((build / "pid.txt").read_text())
        subprocess.run([*ONITU, "keys", "revoke", "remote", "--data", str(data)], env=env_for(data), check=True,
                       capture_output=True)
        revoked_at = time.monotonic()
        assert worker.wait(10) == 1
        took = time.monotonic() - revoked_at
        stderr = worker.stderr.read()
        assert took < 2.5, took
        assert "revoked" in stderr and "remote" in stderr, stderr
        assert not psutil.pid_exists(recipe) or psutil.Process(recipe).status() == psutil.STATUS_ZOMBIE
        with connect(server.ipc) as space:
            wait_for(lambda: space.read_all(("make.working", None, None, None)) == [], timeout=5,
                     what="the revoked worker's claim to go")
            assert space.read_all(("make.worker", None, None)) == []
            wait_for(lambda: len(space.read_all(("make.task", None, None, None))) == 1, timeout=20,
                     what="the driver to queue the task again")
    finally:
        stop(worker)
        if driver is not None:
            stop(driver)
        server.stop()
