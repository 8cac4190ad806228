"""A hub with a majordomo under ``onitu start``, and ``onitu agent`` processes with their own data dirs and keys."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tests.sync.hub import Hub, tree


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keys(data: Path, *args: str) -> subprocess.CompletedProcess:
    """``onitu keys ARGS --data DATA``."""
    out = subprocess.run([sys.executable, "-m", "onitu.cli", "keys", *args, "--data", str(data)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


class MajordomoHub(Hub):
    """A hub with local service ``hub`` on folders ``docs`` and ``secret``, and a majordomo granting ``clients``
    (``{key name: "folders: [...], mode: ..."}``)."""

    def __init__(self, tmp: Path, clients: dict[str, str], host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.endpoint = f"tcp://{host}:{self.port}"
        grants = "".join(f"    {name}: {{{grant}}}\n" for name, grant in clients.items())
        self.extra = (f"majordomo:\n  listen: {self.endpoint}\n  clients:\n{grants}")
        super().__init__(tmp, names=("hub",))
        self.config.write_text(self.config.read_text().replace(
            "folders:\n  docs: {}\n", "folders:\n  docs: {}\n  secret: {}\n").replace(
            "folders: {docs: {}}}", "folders: {docs: docs, secret: secret}}") + self.extra)
        self.docs = self.roots["hub"] / "docs"

    def start(self, paired: bool = True) -> MajordomoHub:
        for folder in ("docs", "secret"):
            (self.roots["hub"] / folder).mkdir(parents=True, exist_ok=True)
        super().start(paired)
        self.wait(lambda s: any(p["name"] == "majordomo" and p["state"] == "running"
                                for p in s.get("processes", [])), 30, "the majordomo")
        return self

    def majordomo_log(self) -> str:
        path = self.data / "run" / "majordomo.log"
        return path.read_text() if path.exists() else ""

    def agent_logs(self) -> str:
        return super().agent_logs() + f"\n--- majordomo.log\n{self.majordomo_log()[-3000:]}"


class AgentProc:
    """``onitu agent`` with service ``NAME-files`` (a local root under ``tmp/NAME``) on ``folders``."""

    def __init__(self, tmp: Path, hub: MajordomoHub, name: str, folders: tuple[str, ...] = ("docs",),
                 allow: bool = True, prefix: tuple[str, ...] = (), shared: str = "{}", own: str = "") -> None:
        """``prefix``: a command that runs it elsewhere (``ip netns exec NS``); ``shared`` and ``own``: the options
        of folder ``docs`` in agent.yaml, under ``folders:`` and under the service (YAML flow mappings)."""
        self.name, self.hub, self.prefix = name, hub, prefix
        self.dir = tmp / f"agent-{name}"
        self.data = self.dir / "data"
        self.root = tmp / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.service = f"{name}-files"
        self.config = self.dir / "agent.yaml"
        self.dir.mkdir(parents=True, exist_ok=True)
        decl = "".join(f"  {f}: {shared if f == 'docs' else '{}'}\n" for f in folders)
        mapped = ", ".join(f"{f}: {own if f == 'docs' else f}" for f in folders)
        self.config.write_text(f"data: {self.data}\nfolders:\n{decl}services:\n  {self.service}: "
                               f"{{driver: local, options: {{root: {self.root}, settle: 0.1}}, "
                               f"folders: {{{mapped}}}}}\n")
        keys(self.data, "new", name, "--no-allow")
        if allow:
            keys(hub.data, "allow", str(self.data / "keys" / f"{name}.key"))
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "agent.log"

    def start(self) -> AgentProc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "onitu.cli", "agent", "--hub", self.hub.endpoint, "--hub-key",
                 str(self.hub.data / "keys" / "server.key"), "--key", self.name, "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "ONITU_LOG": "INFO"})
        return self

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def tree(self) -> dict[str, str]:
        return tree(self.root)


def wait_for(pred: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


class RawAgent:
    """An agent played with raw frames over a real CURVE connection, for hostile tests."""

    def __init__(self, hub: MajordomoHub, data: Path, name: str, reads: bool = True) -> None:
        """``reads`` False: its socket takes in next to nothing (a peer that stops reading)."""
        import zmq

        from onitu.space.auth import client_keys, configure_client, load_pair

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if not reads:
            self.sock.rcvhwm, self.sock.rcvbuf = 1, 4096
        self.received = 0
        configure_client(self.sock, load_pair(hub.data / "keys" / "server.key")[0], *client_keys(data, name))
        self.sock.connect(hub.endpoint)
        self.serve_with: Callable[[str, int, int], bytes] = lambda path, offset, length: b""
        self.served: list[str] = []

    def send(self, *parts: object) -> None:
        from onitu.sync.majordomo.wire import pack

        self.sock.send(pack(*parts))

    def raw(self, frame: bytes) -> None:
        self.sock.send(frame)

    def expect(self, kind: str, rid: object = None, timeout: float = 15.0) -> list:
        """The next message of ``kind`` (with ``rid``), answering pings and serves meanwhile."""
        from onitu.sync.majordomo.wire import cost, unpack

        deadline = time.monotonic() + timeout
        last_ping = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - last_ping > 1.0:
                last_ping = time.monotonic()
                self.send("ping")
            if not self.sock.poll(100):
                continue
            raw = self.sock.recv()
            self.received += cost(raw)
            self.send("ack", self.received)
            msg = unpack(raw)
            if msg[0] == "serve":
                _, tag, _, path, offset, length = msg
                self.served.append(path)
                self.send("served", tag, True, self.serve_with(path, offset, length))
            elif msg[0] == kind and (rid is None or msg[1] == rid):
                return msg
        raise AssertionError(f"no {kind} {rid} within {timeout} s")

    def hello(self, services: dict) -> None:
        from onitu.sync.majordomo.wire import VERSION

        self.send("hello", {"version": VERSION, "services": services})

    def call(self, rid: int, op: str, args: dict) -> list:
        self.send("call", rid, op, args)
        return self.expect("result", rid)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@contextlib.contextmanager
def running(hub: MajordomoHub, agents: Iterable[AgentProc]) -> Iterator[MajordomoHub]:
    """``hub`` started; on the way out, ``agents`` (as they are then: a live view may grow meanwhile) killed and the
    hub stopped, killed if it will not stop."""
    try:
        yield hub.start()
    finally:
        for agent in list(agents):
            agent.kill9()
        try:
            hub.stop()
        finally:
            hub.kill_everything()
