"""The majordomo process (``python -m onitu.sync.majordomo``), supervised under ``onitu start`` when
``majordomo.listen`` is set.

A CURVE ROUTER with the hub's server key (``DATA/keys/server.key``) admits a connection only if its key is in
``DATA/keys/authorized`` (``onitu keys allow``: the ZAP handler of :class:`onitu.space.keyring.Keyring`, which logs
refused keys by fingerprint), then only a hello from a key listed under ``majordomo.clients`` whose services join
granted folders (:class:`onitu.sync.majordomo.session.AgentSession`). A key revoked while its agent is connected is
noticed within half a second: the agent is told and its session ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from onitu.config import Config
from onitu.heartbeat import Responder
from onitu.space import aconnect
from onitu.space.aio import AsyncSpaceClient
from onitu.space.auth import fingerprint
from onitu.space.errors import ProtocolError, SpaceError, Unavailable
from onitu.space.keyring import Keyring
from onitu.space.peers import Peers
from onitu.space.quietlog import QuietLog
from onitu.sync import tuples
from onitu.sync.majordomo.relay import AgentFiles, Answer, HubFiles, Pending
from onitu.sync.majordomo.session import AgentSession
from onitu.sync.majordomo.wire import KINDS_FROM_AGENT, MAX_FRAME, SILENCE, pack, unpack

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between looks at revoked keys, silent agents and the plugs' tuples
CONNECT_PATIENCE = 30.0
SEND_QUEUE = 100_000  # frames queued for one agent at most (they are small unless counted in UNREAD_MAX)
STUCK = 3 * SILENCE  # seconds an agent may go on pinging without reading what was sent to it


class Majordomo:
    """The hub's door for agents."""

    def __init__(self, config: Config) -> None:
        self.config, self.clients = config, config.majordomo.clients
        self.ctx = zmq.Context()
        self.actx = zmq.asyncio.Context.shadow(self.ctx.underlying)
        self.keyring = Keyring(self.ctx, config.data, Counter())
        plain = self.ctx.socket(zmq.ROUTER)
        plain.linger = 0
        plain.curve_server = True
        plain.curve_secretkey = self.keyring.secret
        plain.maxmsgsize = MAX_FRAME
        # an agent's queue is bounded by the bytes it acknowledges (session.UNREAD_MAX); this bounds the count of
        # frames, and a full queue fails the send (and drops the agent) instead of losing a frame silently
        plain.sndhwm = SEND_QUEUE
        plain.router_mandatory = True
        plain.bind(config.majordomo.listen)
        self._plain = plain
        self.peers = Peers(self.keyring.counters, MAX_FRAME, self.keyring.handshake_failed)
        self.monitor = self.peers.monitor(plain, curve=True)
        self.router = zmq.asyncio.Socket.shadow(plain.underlying)
        self.sessions: dict[bytes, AgentSession] = {}
        self.by_service: dict[str, AgentSession] = {}
        self.pending = Pending()
        self.hub_files = HubFiles(self.actx, self.pending)
        self.agent_files = AgentFiles(self._route, self.serve)
        self.plugs: dict[str, dict[str, Any]] = {}  # service -> its live plug's info, read every TICK
        # agent -> bytes of file contents relayed by this process, to it and from it (shown by its heartbeat)
        self.relayed: dict[str, dict[str, int]] = {}
        self.quiet = QuietLog(log)
        self.space: AsyncSpaceClient = None  # type: ignore[assignment]  # connected in run()
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task] = set()

    # -- the agents' frames -------------------------------------------------------------------------------------

    def send(self, ident: bytes, frame: bytes) -> None:
        sent = self.router.send_multipart([ident, frame], zmq.NOBLOCK)  # (done at once: nothing ever awaits it)
        error = sent.exception() if sent.done() else None
        if isinstance(error, zmq.Again):  # its queue is full: an agent that does not read
            session = self.sessions.get(ident)
            if session is not None:
                session.choke(f"{SEND_QUEUE} frames sent to it wait unread")
        # any other error: the peer is gone (EHOSTUNREACH), its frames have nowhere to go

    async def _receive(self) -> None:
        while True:
            frames = await self.router.recv_multipart(copy=False)
            if len(frames) != 2:
                continue
            ident, key = frames[0].bytes, frames[1].get("User-Id")
            self._frame(ident, key, frames[1].bytes)

    def _frame(self, ident: bytes, key: str, raw: bytes) -> None:
        if not self._authorized(key):
            self.send(ident, pack("revoked", "this key is not authorized on the hub (any more)"))
            return
        name = self.keyring.name_of(key)
        try:
            msg = unpack(raw, KINDS_FROM_AGENT)
        except (ProtocolError, SpaceError) as exc:
            self.quiet.warn(f"malformed {name}", "agent %s (%s): malformed frame: %s", name, fingerprint(key), exc)
            return
        session = self.sessions.get(ident)
        if msg[0] == "hello":
            if session is None:
                self._hello(ident, key, name, msg[1])
            return
        if session is None:
            self.send(ident, pack("again"))  # a connection from before this process started: hello again
            return
        session.last_seen = time.monotonic()
        kind = msg[0]
        if kind == "call":
            session.spawn(session.call(*msg[1:]))
        elif kind == "notify":
            session.notes[msg[1]] = session.spawn(session.notify(*msg[1:]))
        elif kind == "unnotify":
            task = session.notes.pop(msg[1], None)
            if task is not None:
                task.cancel()
        elif kind == "fetch" and session.ready.is_set():
            session.fetch(*msg[1:])
        elif kind == "served":
            self.pending.settle(msg[1], msg[2], msg[3])
        elif kind == "ping":
            session.send("pong")
        elif kind == "ack":
            session.ack(msg[1])

    def _authorized(self, key: str) -> bool:
        if self.keyring.allows(key):
            return True
        self._revoke(self.keyring.reload())
        return self.keyring.allows(key)

    def _hello(self, ident: bytes, key: str, name: str, body: Any) -> None:
        session = AgentSession(self, ident, key, name)
        self.sessions[ident] = session
        if name not in self.clients:
            self.refuse(session, f"key {name} is not listed under majordomo.clients in {self.config.source}")
            return
        for other in [s for s in self.sessions.values() if s.name == name and s is not session]:
            self.later(self.drop(other, "the agent connected again"))
        session.spawn(session.hello(body))

    def later(self, work: Any) -> None:
        """Run ``work`` in the background (kept until it is done)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def refuse(self, session: AgentSession, why: str) -> None:
        """Turn an agent away, saying why to it and to the log (with its key's name and fingerprint)."""
        log.warning("refused agent %s (%s): %s", session.name, fingerprint(session.key), why)
        session.send("refused", why)
        self.later(self.drop(session, "refused"))

    def admitted(self, session: AgentSession) -> None:
        for service in session.tokens:
            self.by_service[service] = session

    async def drop(self, session: AgentSession, why: str) -> None:
        if self.sessions.get(session.ident) is session:
            del self.sessions[session.ident]
        for service in [s for s, owner in self.by_service.items() if owner is session]:
            del self.by_service[service]
        await session.close(why)

    def _revoke(self, keys: set[str]) -> None:
        for session in [s for s in self.sessions.values() if s.key in keys]:
            session.send("revoked", f"key {session.name} was revoked on the hub")
            self.later(self.drop(session, "its key was revoked"))

    # -- chunks ---------------------------------------------------------------------------------------------------

    def _route(self, token: str) -> tuple[AgentSession, str] | None:
        for service, session in self.by_service.items():
            if session.tokens.get(service) == token:
                return session, service
        return None

    def count(self, agent: str, way: str, ok: bool, body: Any) -> None:
        """Count a chunk relayed ``way`` (``to_agent`` or ``from_agent``)."""
        if ok and isinstance(body, bytes):
            counts = self.relayed.setdefault(agent, {"to_agent": 0, "from_agent": 0})
            counts[way] += len(body)

    def serve(self, session: AgentSession, service: str, path: str, offset: int, length: int,
              answer: Answer) -> None:
        """Ask an agent for a chunk of one of its files."""
        def counted(ok: bool, body: Any) -> None:
            self.count(session.name, "from_agent", ok, body)
            answer(ok, body)

        tag = self.pending.add(session, counted, length)
        session.send("serve", tag, service, path, offset, length)

    def fetch_for(self, asking: AgentSession, service: str, info: dict[str, Any], path: str, offset: int,
                  length: int, answer: Answer) -> None:
        """A chunk of ``service``'s file for an agent: from another agent, or from a plug of the hub."""
        owner = self.by_service.get(service)
        if info.get("remote"):
            if owner is None:
                answer(False, f"agent service {service} is not connected")
            else:
                self.serve(owner, service, path, offset, length, answer)
        else:
            self.hub_files.fetch(asking, info, path, offset, length, answer)

    # -- the loop -------------------------------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self._revoke(self.keyring.reload())
            self.peers.handle(self.monitor)
            self.pending.expire()
            now = time.monotonic()
            for session in [s for s in self.sessions.values() if now - s.last_seen > SILENCE]:
                await self.drop(session, f"silent for {SILENCE:g} s")
            for session in [s for s in self.sessions.values() if s.unread() and now - s.last_ack > STUCK]:
                await self.drop(session, f"it has read nothing sent to it for {STUCK:g} s")
            with contextlib.suppress(SpaceError):
                await self._read_plugs()

    async def _read_plugs(self) -> None:
        found = await self.space.read_all((tuples.PLUG, None, None))
        self.plugs = {t[1]: t[2] for t in found if isinstance(t[1], str) and isinstance(t[2], dict)}

    async def run(self) -> None:
        """Serve until SIGTERM."""
        self.space = await self._connect()
        await self._read_plugs()  # before the first agent's fetch
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        heartbeat = Responder.from_env(lambda: {"agents": sorted(s.name for s in self.sessions.values()),
                                                 "relayed": self.relayed})
        if heartbeat is not None:
            heartbeat.attach(loop)
        tasks = [asyncio.create_task(t) for t in (self._receive(), self._tick(), self.agent_files.run())]
        log.info("majordomo listening on %s", self.config.majordomo.listen)
        await self._stop.wait()
        for session in list(self.sessions.values()):
            await self.drop(session, "the majordomo stops")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.space.close()

    async def _connect(self) -> AsyncSpaceClient:
        deadline = time.monotonic() + CONNECT_PATIENCE
        while True:
            try:
                return await aconnect(None, data_dir=self.config.data, session_ttl=5.0)
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def close(self) -> None:
        self.hub_files.close()
        self.agent_files.close()
        self.peers.close()
        self.keyring.close()
        self.router.close(0)
        self._plain.close(0)
        self.ctx.term()


def main(argv: list[str] | None = None) -> int:
    """Run the majordomo of the config."""
    from onitu import config as config_mod
    from onitu.logs import configure_logging

    configure_logging("INFO")
    parser = argparse.ArgumentParser(prog="onitu-majordomo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    config = config_mod.load(args.config or config_mod.default_path())
    if not config.majordomo.listen:
        parser.error("majordomo.listen is not set in the config")
    door = Majordomo(config)
    try:
        asyncio.run(door.run())
    finally:
        door.close()
    return 0
