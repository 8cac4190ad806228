"""One admitted agent on the majordomo: its grant, its own session in the space, its notify streams.

Its space operations run on a client of the space made for it alone, so its plugs' session-leased tuples live as
long as its connection: an agent that goes away (closed, silent for :data:`onitu.sync.majordomo.wire.SILENCE`
seconds, or revoked) takes its plug tuples with it and its services are offline, while what they hold stays
recorded in the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from onitu.schema import plain_name
from onitu.space import aconnect
from onitu.space.aio import AsyncSpaceClient
from onitu.space.errors import Refused, SpaceError
from onitu.sync import tuples
from onitu.sync.drivers.contract import CHUNK
from onitu.sync.majordomo import registry
from onitu.sync.majordomo.grants import Grant
from onitu.sync.majordomo.relay import token
from onitu.sync.majordomo.wire import VERSION, cost, error_body, pack
from onitu.sync.plug.orders import TRANSFERS
from onitu.sync.plug.transfer import WINDOW
from onitu.sync.settings import ServiceFolderConfig

if TYPE_CHECKING:
    from onitu.sync.majordomo.server import Majordomo

log = logging.getLogger(__name__)

SESSION_TTL = 3.0  # as a plug's
# Chunks asked for an agent at once (two plugs' worth of copies, WINDOW chunks in flight each): beyond this its fetches
# are refused, so one agent cannot have the hub read from its plugs faster than the agent takes the chunks.
IN_FLIGHT = 2 * WINDOW * TRANSFERS
# Bytes sent to an agent and not acknowledged (wire.ACK_EVERY) past which it is dropped: the chunks it may have
# asked for, and room for its results and events. So the hub never queues more than this for an agent that does
# not read (its fetches are refused once their answers would not fit, see fetch).
UNREAD_MAX = IN_FLIGHT * CHUNK + 16 * 1024 * 1024
LONGEST_WAIT = 30.0  # seconds an agent's take or read may block


class AgentSession:
    """An agent connected with the key ``name`` (``key``: its z85 public key) from ZeroMQ identity ``ident``."""

    def __init__(self, door: Majordomo, ident: bytes, key: str, name: str) -> None:
        self.door, self.ident, self.key, self.name = door, ident, key, name
        self.grant: Grant | None = None
        self.space: AsyncSpaceClient | None = None
        self.ready = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.notes: dict[int, asyncio.Task] = {}
        self.tokens: dict[str, str] = {}  # service -> the token standing for its chunk server
        self.last_seen = time.monotonic()
        self.in_flight = 0  # chunks asked for the agent and not yet passed on
        self.sent = self.acked = 0  # bytes of the frames sent to it (wire.cost), and of those it acknowledged
        self.last_ack = time.monotonic()  # when its acknowledged bytes last grew
        self.closed = False  # nothing more is sent to it
        self.ended = False

    def send(self, *parts: Any) -> None:
        """Queue a message for the agent, unless it stopped reading (then it is dropped)."""
        if self.closed:
            return
        frame = pack(*parts)
        self.sent += cost(frame)
        if self.unread() > UNREAD_MAX:
            self.choke(f"it has not read the last {self.unread() >> 20} MiB sent to it")
            return
        self.door.send(self.ident, frame)

    def choke(self, why: str) -> None:
        """Drop an agent that does not read what it is sent: nothing more is queued for it."""
        if not self.closed:
            self.closed = True
            log.warning("agent %s: dropped: %s", self.name, why)
            self.door.later(self.door.drop(self, "it does not read"))

    def unread(self) -> int:
        """Bytes sent to the agent that it has not acknowledged."""
        return self.sent - self.acked

    def ack(self, received: Any) -> None:
        """The agent's acknowledgement of the bytes it received so far."""
        if type(received) is int and self.acked < received <= self.sent:
            self.acked, self.last_ack = received, time.monotonic()

    def spawn(self, work: Any) -> asyncio.Task:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- admission ----------------------------------------------------------------------------------------------

    async def hello(self, body: Any) -> None:
        """Admit the agent's services if its key may have them, else refuse it (logged with the key's name)."""
        try:
            configs = self._check_services(body)
            claimed = registry.services(await self.door.space.read_all((registry.REMOTE, None, None)))
            for service in configs:
                owner = claimed.get(service, {}).get("agent", self.name)
                if owner != self.name:
                    raise Refused(f"service name {service!r} belongs to agent {owner}; rename it in agent.yaml")
            self.space = await aconnect(None, data_dir=self.door.config.data, session_ttl=SESSION_TTL)
            for service, folders in configs.items():
                body = registry.record(self.name, folders)
                if claimed.get(service) != body:
                    ops: list[tuple] = [("take", (registry.REMOTE, service, None))] if service in claimed else []
                    await self.door.space.batch([*ops, ("write", (registry.REMOTE, service, body))])
        except Refused as exc:
            self.door.refuse(self, str(exc))
            return
        grant = self.door.clients[self.name]
        services = {service: {f: c.path for f, c in folders.items()} for service, folders in configs.items()}
        self.grant = Grant(self.name, services, receives=grant.mode in ("r", "rw"))
        for service in services:
            self.tokens[service] = token()
        self.door.admitted(self)
        self.ready.set()
        self.send("welcome", {"agent": self.name, "services": sorted(services)})
        log.info("agent %s connected: services %s", self.name, ", ".join(sorted(services)) or "none")

    def _check_services(self, body: Any) -> dict[str, dict[str, ServiceFolderConfig]]:
        """The services of a hello, checked against the key's grant and the hub's folders: their folder options
        as agent.yaml gives them, with the hub's mode (what the grant, the folder and agent.yaml all allow)."""
        if not isinstance(body, dict) or body.get("version") != VERSION or not isinstance(body.get("services"), dict):
            raise Refused(f"hello of another version or malformed (this hub speaks version {VERSION})")
        services = {}
        for service, folders in body["services"].items():
            try:
                plain_name(service)
            except (ValueError, TypeError):
                raise Refused(f"bad service name {service!r:.60}") from None
            if service in self.door.config.services:
                raise Refused(f"service name {service!r} is a service of the hub; rename it in agent.yaml")
            if not isinstance(folders, dict) or not folders:
                raise Refused(f"service {service}: no folders")
            services[service] = {folder: self._folder_options(service, folder, options)
                                 for folder, options in folders.items()}
        return services

    def _folder_options(self, service: str, folder: Any, options: Any) -> ServiceFolderConfig:
        grant, hub = self.door.clients[self.name], self.door.config
        if folder not in grant.folders:
            raise Refused(f"service {service}: folder {folder!r:.60} is not granted to key {self.name} "
                          f"(granted: {', '.join(grant.folders) or 'none'})")
        if folder not in hub.folders:
            raise Refused(f"service {service}: the hub has no folder {folder!r}")
        try:
            asked = ServiceFolderConfig.model_validate(options)  # (its path checked as safe_path does)
        except ValidationError as exc:
            why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
            raise Refused(f"service {service}: folder {folder}: bad options in agent.yaml: {why}") from None
        mode = registry.service_mode(grant.mode, hub.folders[folder].mode, asked.mode)
        if mode is None:
            raise Refused(f"folder {folder}: key mode {grant.mode} (said from the agent's side), the hub folder's "
                          f"mode {hub.folders[folder].mode} and mode {asked.mode} in agent.yaml leave nothing to sync")
        given = asked.model_dump(exclude_unset=True, exclude={"mode"})
        return ServiceFolderConfig.model_validate({**given, "path": asked.path, "mode": mode})

    # -- space operations ---------------------------------------------------------------------------------------

    async def call(self, rid: Any, op: Any, args: Any) -> None:
        """Run one space operation of the agent's plugs and answer it."""
        await self.ready.wait()
        try:
            if not isinstance(args, dict):
                raise Refused("malformed call")
            self.send("result", rid, True, await self._run(op, args))
        except SpaceError as exc:
            if isinstance(exc, Refused):
                self.door.quiet.warn(f"refused {self.name}", "agent %s: refused: %s", self.name, exc)
            self.send("result", rid, False, error_body(exc))
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            self.send("result", rid, False, error_body(Refused(f"malformed {op!r:.20}: {exc}")))
        except Exception as exc:  # a bug here must not leave the agent's plug waiting for an answer
            log.exception("agent %s: %s failed", self.name, op)
            self.send("result", rid, False, ["server", f"the majordomo failed: {exc}"])

    async def _run(self, op: Any, args: dict[str, Any]) -> Any:
        grant, space = self.grant, self.space
        assert grant is not None and space is not None
        if op == "write":
            tup, lease = grant.check_write(args["t"], args.get("lease"))
            await space.write(self._registered(tup), lease)
            return None
        if op in ("take", "read"):
            template, timeout = args["p"], args.get("timeout")
            grant.check_template(op, template)
            if not (isinstance(timeout, int | float) and 0 <= timeout <= LONGEST_WAIT):
                raise Refused(f"a {op} may wait at most {LONGEST_WAIT:g} s")
            if template[0] == tuples.PLUG:
                template = (tuples.PLUG, template[1], None)  # its tuple as rewritten here
            return await (space.take if op == "take" else space.read)(template, timeout)
        if op == "read_all":
            grant.check_template(op, args["p"])
            found = await space.read_all(args["p"], args.get("limit"))
            return self._shown(found) if args["p"][0] == tuples.PLUG else found
        if op == "batch":
            await self._batch(args["ops"])
            return None
        raise Refused(f"unknown operation {op!r:.20}")

    async def _batch(self, ops: Any) -> None:
        """A plug's batches: writes, and the take of its previous plug tuple (done first: the tuple in the space
        is the rewritten one, and is gone when the agent reconnects)."""
        assert self.grant is not None and self.space is not None
        wire = []
        for op in ops:
            if op[0] == "write":
                tup, lease = self.grant.check_write(op[1], op[2] if len(op) > 2 else None)
                wire.append(("write", self._registered(tup), lease))
            elif op[0] in ("take", "discard") and len(op) == 2:  # discard: a take whose answer holds no tuple
                self.grant.check_template("take", op[1])
                if op[1][0] == tuples.PLUG:
                    await self.space.take((tuples.PLUG, op[1][1], None), 0)
                else:
                    wire.append((op[0], op[1]))
            else:
                raise Refused(f"batch op {str(op)[:40]}")
        await self.space.batch(wire)

    def _registered(self, tup: Any) -> Any:
        """A plug tuple as the hub must see it: its chunk server is the majordomo's, its folders those admitted."""
        if tup[0] != tuples.PLUG:
            return tup
        info = tup[2] if isinstance(tup[2], dict) else {}
        plug_id, reason = info.get("id"), info.get("reason")
        if not isinstance(plug_id, str) or len(plug_id) > 64 or not (reason is None or isinstance(reason, str)):
            raise Refused("malformed plug tuple")
        assert self.grant is not None
        return (tuples.PLUG, tup[1], {
            "id": plug_id, "available": info.get("available") is True, "reason": (reason or "")[:500] or None,
            "pid": 0, "root": f"{self.name}:", "folders": self.grant.services[tup[1]], "remote": self.name,
            "endpoint": self.door.agent_files.endpoint, "key": self.door.agent_files.key,
            "secret": self.tokens[tup[1]]})

    def _shown(self, found: list[Any]) -> list[Any]:
        assert self.grant is not None
        out = []
        for _, service, info in found:
            folders = info.get("folders") if isinstance(info, dict) else None
            shown = self.grant.shown_plug(service, info, folders) if isinstance(folders, dict) else None
            if shown is not None:
                out.append((tuples.PLUG, service, shown))
        return out

    async def notify(self, nid: Any, events: Any, template: Any) -> None:
        """Relay a notify stream: confirmed once subscribed, then its events, until unnotify or its end."""
        await self.ready.wait()
        assert self.grant is not None and self.space is not None
        try:
            if events not in (["write"], ["write", "take"]):  # (takes: a plug forgets the orders it saw taken)
                raise Refused("only write and take events may be followed")
            self.grant.check_template("notify", template)
            note = await self.space.notify(events, template)
        except SpaceError as exc:
            self.send("lost", nid, *error_body(exc))
            return
        self.send("result", nid, True, None)
        try:
            while True:
                event = await note.next()
                self.send("event", nid, event.id, event.kind, event.tuple)
        except SpaceError as exc:
            self.send("lost", nid, *error_body(exc))
        finally:
            with contextlib.suppress(SpaceError):
                await note.close()

    # -- chunks -------------------------------------------------------------------------------------------------

    def fetch(self, rid: Any, service: Any, path: Any, offset: Any, length: Any) -> None:
        """A chunk of another service's file, for one of the agent's plugs (answered ``fetched``)."""
        assert self.grant is not None
        info = self.door.plugs.get(service) if isinstance(service, str) else None

        def answer(ok: bool, body: Any) -> None:
            self.in_flight -= 1
            self.door.count(self.name, "to_agent", ok, body)
            self.send("fetched", rid, ok, body)

        self.in_flight += 1
        if self.in_flight * CHUNK + self.unread() > IN_FLIGHT * CHUNK:
            self.door.quiet.warn(f"unread {self.name}", "agent %s: its fetches are refused: %d chunks asked, %d MiB "
                                 "sent to it not read yet", self.name, self.in_flight - 1, self.unread() >> 20)
            answer(False, f"more than {IN_FLIGHT} chunks asked and not read yet")
            return
        if info is None:
            answer(False, f"no live plug of {service!r:.60}")
            return
        try:
            path = self.grant.check_fetch(service, info.get("folders") or {}, path, offset, length)
        except Refused as exc:
            self.door.quiet.warn(f"fetch {self.name}", "agent %s: refused: %s", self.name, exc)
            answer(False, str(exc))
            return
        self.door.fetch_for(self, service, info, path, offset, length, answer)

    async def close(self, why: str) -> None:
        """End the session: its streams, its relays, its session in the space (its plug tuples go with it)."""
        if self.ended:
            return
        self.ended = self.closed = True
        log.info("agent %s disconnected: %s", self.name, why)
        self.door.pending.fail_owner(self, f"agent {self.name} disconnected")
        for task in list(self.tasks):
            task.cancel()
        if self.space is not None:
            with contextlib.suppress(SpaceError):
                await self.space.close()
