"""Chunks through the majordomo, both ways, answered in the order they were asked.

- :class:`AgentFiles`: a CURVE ROUTER on the hub that stands for every agent's chunk server. An agent's plug tuple
  names it (with a token per service instead of the agent's secret); a request ``[token, rid, path, offset,
  length]`` from a hub plug becomes a ``serve`` sent to the agent, whose answer goes back to that plug.
- :class:`HubFiles`: DEALERs to the chunk servers of the hub's plugs, for the ``fetch`` requests of agents.

Nothing is buffered beyond the requests in flight: a fetching plug keeps a few chunks asked at a time
(:data:`onitu.sync.plug.transfer.WINDOW`), so a slow agent slows its transfers instead of filling the hub's memory.
Answers travel from the socket that got them straight to the one that asked, so they keep their order (the
fetching side checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq
import zmq.asyncio

from onitu.space.auth import ephemeral_client, ephemeral_server
from onitu.sync.drivers.contract import CHUNK

log = logging.getLogger(__name__)

EXPIRY = 60.0  # seconds; a fetching plug gives up after 30 (onitu.sync.plug.transfer.TIMEOUT)
Answer = Callable[[bool, Any], None]  # (ok, data or error) -> send it where it was asked


def checked_chunk(ok: Any, body: Any, length: int) -> tuple[bool, Any]:
    """An answer as it may be passed on: data no longer than asked, or an error text."""
    if ok is True and isinstance(body, bytes) and len(body) <= min(length, CHUNK):
        return True, body
    if ok is False and isinstance(body, str):
        return False, body[:500]
    return False, "malformed chunk answer"


class Pending:
    """Requests sent and not yet answered, by tag; each answered once, or failed when its peer goes or after
    :data:`EXPIRY` seconds (a plug that died with requests of ours)."""

    def __init__(self) -> None:
        self._tags = itertools.count(1)
        self.waiting: dict[int, tuple[Any, Answer, int, float]] = {}  # tag -> (owner, answer, length, when asked)

    def add(self, owner: Any, answer: Answer, length: int) -> int:
        tag = next(self._tags)
        self.waiting[tag] = (owner, answer, length, time.monotonic())
        return tag

    def expire(self) -> None:
        """Fail the requests that went unanswered too long (oldest first: tags grow with time)."""
        limit = time.monotonic() - EXPIRY
        for tag in [t for t, e in self.waiting.items() if e[3] < limit]:
            self.waiting.pop(tag)[1](False, f"no answer within {EXPIRY:g} s")

    def settle(self, tag: Any, ok: Any, body: Any) -> bool:
        """Pass an answer on; False if nothing waits for ``tag``."""
        entry = self.waiting.pop(tag, None) if type(tag) is int else None
        if entry is None:
            return False
        entry[1](*checked_chunk(ok, body, entry[2]))
        return True

    def fail_owner(self, owner: Any, why: str) -> None:
        for tag in [t for t, e in self.waiting.items() if e[0] is owner]:
            self.waiting.pop(tag)[1](False, why)


class AgentFiles:
    """The chunk server every agent service's plug tuple names; ``route(token)`` gives ``(session, service)`` or
    None, ``serve(session, service, path, offset, length, answer)`` asks the agent."""

    def __init__(self, route: Callable[[str], Any], serve: Callable[..., None]) -> None:
        self.route, self.serve = route, serve
        # a context of its own: the one of the agents' ROUTER has a ZAP handler, which would refuse the throwaway
        # keys of the plugs that connect here (this server is known by its key published in the space)
        self.ctx = zmq.Context()
        plain, self.key = ephemeral_server(self.ctx, "tcp://127.0.0.1:*")
        self.endpoint = plain.last_endpoint.decode()
        self.sock = zmq.asyncio.Socket.shadow(plain.underlying)
        self._plain = plain

    async def run(self) -> None:
        while True:
            peer, raw = await self._frames()
            if peer is not None:
                self._request(peer, raw)

    async def _frames(self) -> tuple[bytes | None, bytes]:
        frames = await self.sock.recv_multipart()
        return (frames[0], frames[1]) if len(frames) == 2 else (None, b"")

    def _request(self, peer: bytes, raw: bytes) -> None:
        rid: Any = None

        def answer(ok: bool, body: Any) -> None:
            self.sock.send_multipart([peer, msgpack.packb([rid, ok, body])])

        try:
            req = msgpack.unpackb(raw, raw=False)
            if isinstance(req, list) and len(req) >= 2:  # answered with its id: its sender need not wait it out
                rid = req[1]
            token, rid, path, offset, length = req  # (one range at a time: many small files are asked one by one)
            found = self.route(token) if isinstance(token, str) else None
        except (ValueError, TypeError, msgpack.UnpackException):
            answer(False, "not a chunk request")
            return
        if found is None:
            answer(False, "no such agent service (it disconnected)")
            return
        if not (isinstance(path, str) and type(offset) is int and type(length) is int and 0 < length <= CHUNK):
            answer(False, "malformed chunk request")
            return
        session, service = found
        self.serve(session, service, path, offset, length, answer)

    def close(self) -> None:
        self.sock.close(0)
        self._plain.close(0)
        self.ctx.term()


class HubFiles:
    """Connections to the hub plugs' chunk servers, one per server, each with a reader passing answers on."""

    def __init__(self, ctx: zmq.asyncio.Context, pending: Pending) -> None:
        self.ctx, self.pending = ctx, pending
        self.links: dict[tuple[str, str], tuple[zmq.asyncio.Socket, asyncio.Task]] = {}

    def fetch(self, owner: Any, info: dict[str, Any], path: str, offset: int, length: int, answer: Answer) -> None:
        """Ask the plug ``info`` describes for a chunk; ``answer`` gets it (or an error)."""
        endpoint, key, secret = info.get("endpoint"), info.get("key"), info.get("secret")
        if not (isinstance(endpoint, str) and isinstance(key, str) and isinstance(secret, str)):
            answer(False, "the source plug publishes no chunk server")
            return
        sock = self._link(endpoint, key)
        tag = self.pending.add(owner, answer, length)
        sock.send(msgpack.packb([secret, tag, path, offset, length]))

    def _link(self, endpoint: str, key: str) -> zmq.asyncio.Socket:
        found = self.links.get((endpoint, key))
        if found is None:
            if len(self.links) >= 64:  # plugs restarted since: forget the oldest connection
                old = next(iter(self.links))
                self._drop(old)
            sock = ephemeral_client(self.ctx, endpoint, key)
            found = self.links[endpoint, key] = (sock, asyncio.create_task(self._read(sock)))
        return found[0]

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            raw = await sock.recv()
            with contextlib.suppress(ValueError, TypeError, msgpack.UnpackException):
                tag, ok, body = msgpack.unpackb(raw, raw=False)
                self.pending.settle(tag, ok, body)

    def _drop(self, key: tuple[str, str]) -> None:
        sock, task = self.links.pop(key)
        task.cancel()
        sock.close(0)

    def close(self) -> None:
        for key in list(self.links):
            self._drop(key)


def token() -> str:
    """A secret standing for an agent service in its plug tuple."""
    return secrets.token_hex(16)
