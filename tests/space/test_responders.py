"""A supervised server with discovery on has two responders, the watchdog's heartbeat and the LAN's lookups:
both answer while it serves, and both are closed when it stops (once, the heartbeat one was overwritten)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import msgpack
import zmq

from onitu.heartbeat import ENV_ENDPOINT, ENV_NAME
from onitu.space import ring
from onitu.space.server import SpaceServer


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(router: zmq.Socket, n: int, timeout: float = 5.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        router.send_multipart([b"space", msgpack.packb({"op": "ping", "n": n})])
        if router.poll(200):
            _, frame = router.recv_multipart()
            answer = msgpack.unpackb(frame)
            if answer.get("n") == n:
                return answer
    return None


def test_heartbeat_and_discovery_responders_both_answer_and_both_close(tmp_path, monkeypatch):
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    watchdog = f"ipc://{tmp_path}/watchdog.sock"
    router.bind(watchdog)
    monkeypatch.setenv(ENV_ENDPOINT, watchdog)
    monkeypatch.setenv(ENV_NAME, "space")
    port = free_udp_port()
    server = SpaceServer(tmp_path / "data", [f"ipc://{tmp_path}/space.sock"], discovery=("127.0.0.1", port))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        assert ping(router, 1)["status"]["role"] == "primary"
        deadline = time.monotonic() + 5
        while server._discovery is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ring.lookup(port, hosts=("127.0.0.1",))["endpoints"] == server.endpoints
        heartbeat = server._heartbeat
        assert heartbeat is not None and server._discovery is not None
    finally:
        server.loop.call_soon_threadsafe(server.stop)
        thread.join(10)
    assert not thread.is_alive()
    assert heartbeat.sock.closed
    assert server._heartbeat is None and server._discovery is None
    assert ping(router, 2, timeout=1.0) is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))  # the discovery port is free again
    router.close()
    ctx.term()
