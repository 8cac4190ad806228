"""LAN discovery, like Rinda's RingServer but data only: "where is the space?" over UDP (default port 7647).

A lookup is the msgpack map ``{"onitu": "lookup", "v": 1}``; the answer is
``{"onitu": "space", "v": 1, "endpoints": [...], "public_key": z85 | None, "boot": ...}``. Nothing in a
datagram is ever executed; malformed datagrams are ignored and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack

from onitu.space.errors import Unavailable

log = logging.getLogger("onitu.space.ring")

DEFAULT_PORT = 7647
VERSION = 1
MAX_DATAGRAM = 2048


def _is_lookup(data: bytes) -> bool:
    try:
        msg = msgpack.unpackb(data, raw=False)
    except Exception:  # any decoding failure means "not ours"
        return False
    return isinstance(msg, dict) and msg.get("onitu") == "lookup" and msg.get("v") == VERSION


def answer(data: bytes, addr: tuple[str, int], describe: Callable[[bool], dict[str, Any]],
           counters: Counter[str]) -> bytes | None:
    """The reply to one datagram, or None (and counted) if it is not a lookup."""
    if len(data) > MAX_DATAGRAM or not _is_lookup(data):
        counters["discovery_malformed"] += 1
        return None
    counters["discovery_answered"] += 1
    local = addr[0].startswith("127.") or addr[0] == "::1"
    return msgpack.packb({"onitu": "space", "v": VERSION, **describe(local)})


class Responder(asyncio.DatagramProtocol):
    """Answers lookups with what ``describe()`` returns (the server's current endpoints and key)."""

    def __init__(self, describe: Callable[[bool], dict[str, Any]], counters: Counter[str]) -> None:
        self.describe, self.counters = describe, counters
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(data, addr, self.describe, self.counters)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def start_responder(describe: Callable[[bool], dict[str, Any]], counters: Counter[str],
                          host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: Responder(describe, counters),
                                                       local_addr=(host, port), reuse_port=False)
    return transport


class SyncResponder:
    """The same answers from a plain non-blocking socket, for a loop that polls file descriptors."""

    def __init__(self, describe: Callable[[bool], dict[str, Any]], counters: Counter[str], host: str,
                 port: int) -> None:
        self.describe, self.counters = describe, counters
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def handle(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            reply = answer(data, addr, self.describe, self.counters)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, addr)

    def close(self) -> None:
        self.sock.close()


def lookup_hosts() -> tuple[str, ...]:
    """Where lookups go: ``$ONITU_DISCOVERY_HOSTS`` (comma-separated), else this host and the LAN broadcast."""
    env = os.environ.get("ONITU_DISCOVERY_HOSTS")
    return tuple(h.strip() for h in env.split(",") if h.strip()) if env else ("127.0.0.1", "<broadcast>")


def lookup(port: int = DEFAULT_PORT, timeout: float = 1.0, hosts: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Ask the LAN (and this host) where the space is; the first well-formed answer wins."""
    hosts = hosts or lookup_hosts()
    query = msgpack.packb({"onitu": "lookup", "v": VERSION})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for host in hosts:
            with contextlib.suppress(OSError):  # no broadcast route on this host: loopback still works
                sock.sendto(query, ("255.255.255.255" if host == "<broadcast>" else host, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                break
            answer = _parse_answer(data)
            if answer is not None:
                return answer
    raise Unavailable(f"no space answered a discovery lookup on UDP port {port} within {timeout} s")


def _parse_answer(data: bytes) -> dict[str, Any] | None:
    try:
        msg = msgpack.unpackb(data, raw=False)
    except Exception:  # a stray or hostile datagram: keep listening
        return None
    if not (isinstance(msg, dict) and msg.get("onitu") == "space" and msg.get("v") == VERSION):
        return None
    endpoints, key = msg.get("endpoints"), msg.get("public_key")
    if not isinstance(endpoints, list) or not endpoints or not all(isinstance(e, str) for e in endpoints):
        return None
    if key is not None and not (isinstance(key, str) and len(key) == 40):
        return None
    return msg
