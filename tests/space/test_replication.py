"""Two real space servers, this test playing the watchdog: pairing, and the read lease of a paired primary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import msgpack
import pytest
import zmq

from onitu.space import connect


class FakeWatchdog:
    """Just enough of the watchdog: the heartbeat ROUTER, pings and commands."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(endpoint)
        self.n = 0

    def ask(self, name: str, msg: dict, timeout: float = 5.0) -> dict:
        self.n += 1
        deadline = time.monotonic() + timeout
        sent = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - sent > 0.2:  # its DEALER may not be connected yet
                self.sock.send_multipart([name.encode(), msgpack.packb({**msg, "n": self.n})])
                sent = time.monotonic()
            if self.sock.poll(50):
                _, frame = self.sock.recv_multipart()
                reply = msgpack.unpackb(frame)
                if reply.get("n") == self.n:
                    return reply
        raise AssertionError(f"{name} did not answer {msg}")

    def status(self, name: str) -> dict:
        return self.ask(name, {"op": "ping"})["status"]

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def pair(tmp_path):
    wd = FakeWatchdog(f"ipc://{tmp_path}/wd.sock")
    procs = {}
    for name, role, peer in (("b", "secondary", "a"), ("a", "primary", "b")):
        (tmp_path / name).mkdir()
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "onitu.cli", "space", "serve", "--data", str(tmp_path / name), "--listen",
             f"ipc://{tmp_path}/{name}/space.sock", "--role", role, "--epoch", "1", "--replica-listen",
             f"ipc://{tmp_path}/{name}/replica.sock", "--peer", f"ipc://{tmp_path}/{peer}/replica.sock",
             "--no-discovery"], env={**os.environ, "ONITU_WATCHDOG": f"ipc://{tmp_path}/wd.sock", "ONITU_NAME": name},
            stderr=subprocess.DEVNULL)
    yield wd, procs
    for proc in procs.values():
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(10)
    wd.close()


def test_a_paired_primary_answers_nothing_without_a_fresh_acknowledgement(pair, tmp_path):
    wd, procs = pair
    deadline = time.monotonic() + 10
    while not wd.status("a").get("synced"):
        assert time.monotonic() < deadline, "the secondary never got in sync"
        time.sleep(0.1)
    assert wd.ask("a", {"op": "command", "command": "pair", "epoch": 2, "lease": 0.3}).get("ok")
    with connect(f"ipc://{tmp_path}/a/space.sock", connect_timeout=5) as space:
        space.write(["x", 1])  # paired: answered once the secondary made it durable
        assert wd.status("b")["applied"] >= 1
        os.kill(procs["b"].pid, signal.SIGSTOP)
        time.sleep(0.5)  # longer than the lease: the primary can no longer vouch for being the only one
        answered = []
        reader = threading.Thread(target=lambda: answered.append(space.read_all(["x", None])))
        reader.start()
        reader.join(1.5)
        assert not answered, "a paired primary answered a read with no recent word from its secondary"
        os.kill(procs["b"].pid, signal.SIGCONT)
        reader.join(10)
        assert answered == [[("x", 1)]]
    assert wd.status("a")["mode"] == "paired"
