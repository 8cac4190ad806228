"""Real space servers for tests: started as processes on loopback, stopped (or killed) by the test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


class ServerProcess:
    """``onitu space serve`` in a data dir; ``endpoints`` come from the space.json it publishes."""

    def __init__(self, data: Path, *args: str, tcp: str = "tcp://127.0.0.1:*", insecure: bool = True) -> None:
        self.data, self.args, self.tcp, self.insecure = data, args, tcp, insecure
        self.proc: subprocess.Popen | None = None
        self.endpoints: list[str] = []
        self.info: dict = {}

    def start(self, timeout: float = 15.0) -> ServerProcess:
        (self.data / "space.json").unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "onitu.cli", "space", "serve", "--data", str(self.data),
               "--listen", f"ipc://{self.data}/space.sock", "--listen", self.tcp, "--no-discovery", *self.args]
        if self.insecure:
            cmd.append("--insecure-loopback")
        self.log = open(self.data / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"space server exited with {self.proc.returncode}: {self.read_log()}")
            try:
                self.info = json.loads((self.data / "space.json").read_text())
                if self.info.get("pid") == self.proc.pid:
                    self.endpoints = self.info["endpoints"]
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"space server did not start: {self.read_log()}")

    @property
    def ipc(self) -> str:
        return next(ep for ep in self.endpoints if ep.startswith("ipc://"))

    @property
    def tcp_endpoint(self) -> str:
        return next(ep for ep in self.endpoints if ep.startswith("tcp://"))

    def read_log(self) -> str:
        return (self.data / "server.log").read_text(errors="replace")[-3000:]

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None


@pytest.fixture
def server(tmp_path: Path):
    """A real space server (ipc and plain loopback tcp) in a fresh data dir."""
    data = tmp_path / "space"
    data.mkdir()
    srv = ServerProcess(data).start()
    yield srv
    srv.stop()


class RawPrimary:
    """Plays a primary to a secondary's replica socket with raw frames (the tests write the protocol by hand)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sock: socket.socket | None = None  # connected at the first send: the secondary may not listen yet
        self._in = b""

    def send(self, *msg: object) -> None:
        from onitu.space.protocol import packb
        from onitu.space.wire import frame_header

        frame = packb(list(msg))
        if self.sock is not None:
            try:
                self.sock.sendall(frame_header(frame) + frame)
                return
            except OSError:  # the secondary restarted: dial again, as a primary's link does
                self.close()
        self.sock, self._in = self._connect(), b""
        self.sock.sendall(frame_header(frame) + frame)

    def _connect(self, timeout: float = 10.0) -> socket.socket:
        from onitu.space.wire import address

        family, addr = address(self.endpoint)
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.connect(addr)
                return sock
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def answer(self, timeout: float = 3.0) -> object:
        """The secondary's next frame, or None after ``timeout`` seconds."""
        from onitu.space.protocol import unpackb
        from onitu.space.wire import HEADER

        deadline = time.monotonic() + timeout
        while self.sock is not None and time.monotonic() < deadline:
            size = int.from_bytes(self._in[:HEADER], "big") if len(self._in) >= HEADER else None
            if size is not None and len(self._in) >= HEADER + size:
                frame, self._in = self._in[HEADER:HEADER + size], self._in[HEADER + size:]
                return unpackb(frame)
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            self._in += data
        return None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
