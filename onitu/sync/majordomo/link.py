"""The agent's one connection to the majordomo: a CURVE DEALER it dials (the hub never connects to an agent).

It runs an asyncio loop in a thread of its own. Plug threads hand it space operations (:meth:`Link.call`) and
notify streams (:meth:`Link.subscribe`) and wait for their answers. It also carries chunks both ways: its plugs'
fetches of other services' files arrive at a local CURVE ROUTER (:attr:`Link.relay_endpoint`, which the plug
tuples the agent reads name instead of the real servers, see :mod:`.remote_space`) and go out as ``fetch``; the
hub's ``serve`` requests go to the chunk server of the agent's plug, whose answers go back as they come.

When the hub does not answer for :data:`~onitu.sync.majordomo.wire.SILENCE` seconds the link dials again and says
hello again; operations waiting meanwhile are sent again on the new connection (a plug's operations are safe to
repeat), and notify streams end with EventsLost, which the plugs answer by subscribing again and reading what is
waiting. A hub that refuses the agent or revokes its key ends the link for good (:attr:`Link.fatal`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq
import zmq.asyncio

from onitu.space.auth import configure_client, ephemeral_client, ephemeral_server
from onitu.space.errors import EventsLost, KeyRevoked, ProtocolError, Refused, SpaceError, Unavailable
from onitu.space.handles import Event
from onitu.space.protocol import as_tuple
from onitu.sync.majordomo.wire import (
    ACK_EVERY,
    MAX_FRAME,
    PING_EVERY,
    SILENCE,
    VERSION,
    cost,
    error_of,
    pack,
    unpack,
)

log = logging.getLogger(__name__)

BACKOFF = (0.2, 5.0)  # first and longest pause between two dials
_WHAT_TO_DO = {
    "refused": "Fix what the hub says above (agent.yaml, or majordomo.clients on the hub), then start it again.",
    "revoked": "To rejoin, the hub's operator must allow a key of this agent again (`onitu keys allow NAME.key` on "
               "the hub, with the public key file from this agent's data dir), then start it again.",
}


class Acks:
    """The bytes of the hub's frames received on one connection (:func:`~onitu.sync.majordomo.wire.cost`),
    acknowledged once :data:`~onitu.sync.majordomo.wire.ACK_EVERY` more arrived, and with every ping."""

    def __init__(self) -> None:
        self.received = self.acked = 0

    async def send(self, sock: zmq.asyncio.Socket, arrived: int, ping: bool = False) -> None:
        self.received += arrived
        if self.received - self.acked >= (1 if ping else ACK_EVERY):
            self.acked = self.received
            await sock.send(pack("ack", self.acked))


class Link:
    """The agent's connection; ``services`` maps each of its services to its folders (folder -> path)."""

    def __init__(self, hub: str, server_key: bytes, public: bytes, secret: bytes,
                 services: dict[str, dict[str, str]]) -> None:
        self.hub, self.server_key, self.public, self.secret = hub, server_key, public, secret
        self.services = services
        self.fatal: str | None = None
        self.ended = threading.Event()  # set when the link ends for good (fatal, or closed)
        self.on_end: Callable[[], None] = lambda: None  # called once it ends, before what waits on it is failed
        self.up = threading.Event()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[concurrent.futures.Future, list[Any]]] = {}  # rid -> (future, message)
        self._notes: dict[int, queue.SimpleQueue] = {}
        self._local: dict[str, tuple[str, str, str]] = {}  # service -> its chunk server (endpoint, key, secret)
        self._fetching: dict[int, tuple[bytes, Any]] = {}  # fetch rid -> (local peer, its request id)
        self.ctx = zmq.asyncio.Context()
        self.sock: zmq.asyncio.Socket | None = None
        plain, self.relay_key = ephemeral_server(zmq.Context.instance(), "tcp://127.0.0.1:*")
        self.relay_endpoint = plain.last_endpoint.decode()
        self._relay_plain = plain
        self._servers: dict[str, tuple[zmq.asyncio.Socket, asyncio.Task]] = {}  # by endpoint
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),),
                                        name="onitu-agent-link", daemon=True)
        self._thread.start()

    # -- for the plugs' threads -----------------------------------------------------------------------------------

    def call(self, op: str, args: dict[str, Any]) -> Any:
        """Run a space operation through the hub; waits while the hub is unreachable."""
        rid = next(self._ids)
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._check()
            self._calls[rid] = (future, ["call", rid, op, args])
        self.loop.call_soon_threadsafe(self._send_call, rid)
        return future.result()

    def subscribe(self, events: list[str], template: Any) -> tuple[int, queue.SimpleQueue]:
        """A notify stream: (its id, the queue its events and its end arrive in), once the hub holds it."""
        nid = next(self._ids)
        events_queue: queue.SimpleQueue = queue.SimpleQueue()
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._check()
            self._notes[nid] = events_queue
            self._calls[nid] = (future, ["notify", nid, events, template])
        self.loop.call_soon_threadsafe(self._send_call, nid)
        future.result()
        return nid, events_queue

    def unsubscribe(self, nid: int) -> None:
        with self._lock:
            self._notes.pop(nid, None)
        self.loop.call_soon_threadsafe(self._send, pack("unnotify", nid))

    def serves(self, service: str, endpoint: str, key: str, secret: str) -> None:
        """Where the chunk server of the agent's own plug of ``service`` is."""
        with self._lock:
            self._local[service] = (endpoint, key, secret)

    def close(self) -> None:
        """End the link (the agent stops)."""
        self._end("the agent stops", Unavailable)
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=5)

    def _check(self) -> None:
        if self.ended.is_set():
            raise (KeyRevoked if self.fatal and "revoked" in self.fatal else Unavailable)(
                self.fatal or "the agent stops")

    def _end(self, why: str, error: type[SpaceError]) -> None:
        with self._lock:
            ending = not self.ended.is_set()
            if ending:
                self.fatal = why if error is not Unavailable else self.fatal
                self.ended.set()
        if ending:
            self.on_end()
        with self._lock:
            calls, self._calls = self._calls, {}
            notes, self._notes = self._notes, {}
        for future, _ in calls.values():
            if not future.done():
                future.set_exception(error(why))
        for events_queue in notes.values():
            events_queue.put(error(why))

    # -- the loop ------------------------------------------------------------------------------------------------

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        relay = zmq.asyncio.Socket.shadow(self._relay_plain.underlying)
        tasks = [asyncio.create_task(self._dial()), asyncio.create_task(self._relay(relay))]
        await self._stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server, reader in self._servers.values():
            reader.cancel()
            server.close(0)
        if self.sock is not None:
            self.sock.close(0)
        relay.close(0)
        self._relay_plain.close(0)
        self.ctx.term()

    async def _dial(self) -> None:
        pause = BACKOFF[0]
        while not self.ended.is_set():
            sock = self.ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.maxmsgsize = MAX_FRAME
            configure_client(sock, self.server_key, self.public, self.secret)
            sock.connect(self.hub)
            self.sock = sock
            try:
                if await self._session(sock):
                    pause = BACKOFF[0]
            finally:
                self.up.clear()
                self.sock = None
                sock.close(0)
                self._lost_connection()
            if not self.ended.is_set():
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF[1])

    async def _session(self, sock: zmq.asyncio.Socket) -> bool:
        """Hello, then frames until the hub is silent, asks for a new hello, refuses or revokes; True if the hub
        admitted the agent."""
        await sock.send(pack("hello", {"version": VERSION, "services": self.services}))
        welcomed = False
        last_heard = last_ping = time.monotonic()
        acks = Acks()
        while time.monotonic() - last_heard <= SILENCE:
            if welcomed and time.monotonic() - last_ping >= PING_EVERY:
                last_ping = time.monotonic()
                await sock.send(pack("ping"))
                await acks.send(sock, 0, ping=True)
            if not await sock.poll(int(PING_EVERY * 1000 / 2)):
                continue
            last_heard = time.monotonic()
            raw = await sock.recv()
            await acks.send(sock, cost(raw))
            try:
                msg = unpack(raw)
            except (ProtocolError, SpaceError) as exc:
                log.warning("malformed frame from the hub: %s", exc)
                continue
            if msg[0] == "welcome":
                welcomed = True
                log.info("connected to the hub at %s as %s", self.hub, msg[1].get("agent"))
                self.up.set()
                self._resend()
            elif msg[0] in ("refused", "revoked"):
                self._turned_away(msg)
                return welcomed
            elif msg[0] == "again":
                return welcomed
            else:
                self._handle(msg)
        if welcomed:
            log.warning("the hub at %s went silent; dialling again", self.hub)
        else:
            log.warning("no answer from the hub at %s for %g s (is it running, this key allowed there with `onitu keys "
                        "allow` and listed under majordomo.clients?); dialling again", self.hub, SILENCE)
        return welcomed

    def _turned_away(self, msg: list[Any]) -> None:
        """The hub refuses or revokes the agent: the link ends for good."""
        kind = msg[0]
        why = f"the hub {kind} this agent: {msg[1] if len(msg) > 1 else ''}"
        log.error("%s; this agent stops. %s", why, _WHAT_TO_DO[kind])
        self._end(why, Refused if kind == "refused" else KeyRevoked)
        self._stopping.set()

    def _lost_connection(self) -> None:
        """Notify streams end (the hub's session is gone); local fetches under way fail at once. A stream the hub
        has not confirmed yet is asked for again on the next connection, like any call waiting (forgetting it left
        its plug waiting for the confirmation for ever when the connection was lost twice in a row)."""
        with self._lock:
            notes = {nid: q for nid, q in self._notes.items() if nid not in self._calls}
            for nid in notes:
                del self._notes[nid]
        for events_queue in notes.values():
            events_queue.put(EventsLost("the connection to the hub was lost"))
        fetching, self._fetching = self._fetching, {}
        for peer, rid in fetching.values():
            self._answer_local(peer, rid, False, "the connection to the hub was lost")

    def _send(self, frame: bytes) -> None:
        if self.sock is not None and self.up.is_set():
            with contextlib.suppress(zmq.ZMQError):
                self.sock.send(frame, zmq.NOBLOCK)

    def _send_call(self, rid: int) -> None:
        with self._lock:
            found = self._calls.get(rid)
        if found is not None:
            self._send(pack(*found[1]))

    def _resend(self) -> None:
        with self._lock:
            waiting = sorted(self._calls)
        for rid in waiting:
            self._send_call(rid)

    def _handle(self, msg: list[Any]) -> None:
        kind = msg[0]
        if kind == "result" and len(msg) == 4:
            with self._lock:
                found = self._calls.pop(msg[1], None) if type(msg[1]) is int else None
            if found is not None and not found[0].done():
                if msg[2] is True:
                    found[0].set_result(msg[3])
                else:
                    found[0].set_exception(error_of(msg[3]))
        elif kind == "event" and len(msg) == 5:
            with self._lock:
                events_queue = self._notes.get(msg[1])
            if events_queue is not None:
                events_queue.put(Event(msg[2], msg[3], as_tuple(msg[4])))
        elif kind == "lost" and len(msg) == 4:
            with self._lock:
                events_queue = self._notes.pop(msg[1], None)
                found = self._calls.pop(msg[1], None)
            error = error_of([msg[2], msg[3]])
            if found is not None and not found[0].done():
                found[0].set_exception(error)
            if events_queue is not None:
                events_queue.put(error if isinstance(error, EventsLost) else EventsLost(str(error)))
        elif kind == "fetched" and len(msg) == 4:
            found_fetch = self._fetching.pop(msg[1], None)
            if found_fetch is not None:
                self._answer_local(*found_fetch, msg[2], msg[3])
        elif kind == "serve" and len(msg) == 6:
            self._serve(*msg[1:])

    # -- chunks ---------------------------------------------------------------------------------------------------

    async def _relay(self, relay: zmq.asyncio.Socket) -> None:
        """Fetches of the agent's plugs: ``[service, rid, path, offset, length]`` (the service stands where its
        secret would), sent to the hub as ``fetch``."""
        self._relay_sock = relay
        while True:
            frames = await relay.recv_multipart()
            if len(frames) != 2:
                continue
            peer = frames[0]
            request = None
            try:
                request = msgpack.unpackb(frames[1], raw=False)
                service, rid, path, offset, length = request
            except (ValueError, TypeError, msgpack.UnpackException):
                if isinstance(request, list) and len(request) >= 2:  # answered, or the plug waits for its timeout
                    self._answer_local(peer, request[1], False, "not a chunk request (one range at a time here)")
                continue
            if not self.up.is_set():
                self._answer_local(peer, rid, False, "the hub is unreachable")
                continue
            tag = next(self._ids)
            self._fetching[tag] = (peer, rid)
            self._send(pack("fetch", tag, service, path, offset, length))

    def _answer_local(self, peer: bytes, rid: Any, ok: Any, body: Any) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._relay_sock.send_multipart([peer, msgpack.packb([rid, ok, body])], zmq.NOBLOCK)

    def _serve(self, tag: Any, service: Any, path: Any, offset: Any, length: Any) -> None:
        with self._lock:
            local = self._local.get(service) if isinstance(service, str) else None
        if local is None:
            self._send(pack("served", tag, False, f"no plug of {service!r:.60} here"))
            return
        endpoint, key, secret = local
        found = self._servers.get(endpoint)
        if found is None:  # (a plug that restarted has a new server, hence a new connection)
            sock = ephemeral_client(self.ctx, endpoint, key)
            found = self._servers[endpoint] = (sock, asyncio.create_task(self._served(sock)))
        found[0].send(msgpack.packb([secret, tag, path, offset, length]))

    async def _served(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            raw = await sock.recv()
            with contextlib.suppress(ValueError, TypeError, msgpack.UnpackException):
                tag, ok, body = msgpack.unpackb(raw, raw=False)
                self._send(pack("served", tag, ok, body))
