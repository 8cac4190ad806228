"""A space server's place in the pair: primary or secondary, its epoch, and the watchdog's commands.

The watchdog decides; servers obey only commands whose epoch is at least their own, and persist every epoch
they adopt, so a restarted server never forgets that it was superseded. :class:`Pairing` also holds back the
replies of a paired primary until its secondary has the batches they depend on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from onitu.space.protocol import packb
from onitu.space.replication import PrimaryLink
from onitu.space.wire import Stream

if TYPE_CHECKING:
    from onitu.space.server import Outbox, SpaceServer

log = logging.getLogger("onitu.space.roles")

DEMOTED = 3  # exit status of a primary that learned it was superseded


class Pairing:
    """Role changes, fencing, held replies, and what the watchdog sees of one server."""

    def __init__(self, server: SpaceServer) -> None:
        self.server = server
        self.fenced = False
        self.require_ack = False  # paired with a synced secondary: replies wait for its acknowledgement
        self.read_lease = 0.3  # seconds an acknowledgement vouches that no one else was promoted (see release)
        self.held: deque[tuple[int, Outbox]] = deque()
        self._scheduled = False
        self._pair_from = 0

    # ---- replication traffic -------------------------------------------------------------------------------

    def watch(self) -> None:
        server = self.server
        if server.sink is not None:
            server.sink.listener.start(server.loop, self.frames_in, server.sink.lost)
        if server.link is not None:
            self.start_link()

    def start_link(self) -> None:
        self.server.link.wire.start(self.server.loop)
        self._probe()

    def frames_in(self) -> None:
        """Replication frames arrived: handle them in a turn."""
        self.server.turn(self.replication_in)

    def _schedule_replication(self) -> None:
        """Frames left over from a turn (at most PER_TURN per connection and turn): handle them in another."""
        server = self.server
        if not self._scheduled and server.loop is not None:
            self._scheduled = True
            server.loop.call_soon(server.turn, self.replication_in)

    def _probe(self) -> None:
        """Ask the secondary where it stands (ack or need): until it is in sync, and while paired, often enough
        to keep the read lease fresh when no batch is flowing."""
        server = self.server
        if server.link is not None and not self.fenced:
            server.link.probe(always=self.require_ack)
            every = self.read_lease / 3 if self.require_ack else 0.5
            server.loop.call_later(every, server.turn, self._probe)

    def replication_in(self) -> None:
        self._scheduled = False
        sink, link = self.server.sink, self.server.link
        if sink is not None:
            sink.receive(self._reply_replica)
        if link is not None:
            link.receive()
        if (sink is not None and sink.pending()) or (link is not None and link.pending()):
            self._schedule_replication()

    def _reply_replica(self, stream: Stream, msg: list) -> None:
        if not stream.send(packb(msg)):
            self.server.counters["replication_dropped"] += 1

    # ---- replies -------------------------------------------------------------------------------------------

    def deliver(self, outbox: Outbox) -> None:
        """Send a turn's replies, or hold them until the secondary has every batch they may depend on."""
        link = self.server.link
        if link is not None and (self.require_ack or self.held):
            self.held.append((link.lsn, outbox))
            self.release()
        else:
            self.server.send_all(outbox)

    def release(self) -> None:
        """Send the replies whose batches the secondary has acknowledged (all of them when not paired).

        Paired, a reply also needs a recent acknowledgement (the read lease): a primary that was stopped long
        enough to be superseded hears nothing from its old secondary, so it cannot even answer a read.
        """
        if self.fenced:
            self.held.clear()
            return
        link = self.server.link
        if self.require_ack and time.monotonic() - link.last_ack > self.read_lease:
            return  # the periodic probe brings a fresh acknowledgement, which calls us again
        while self.held and (not self.require_ack or self.held[0][0] <= link.acked):
            self.server.send_all(self.held.popleft()[1])

    # ---- epochs and commands -------------------------------------------------------------------------------

    def adopt_epoch(self, epoch: int) -> None:
        server = self.server
        if epoch > server.epoch:
            server.epoch = epoch
            server.durable.set_meta("epoch", epoch)

    def demote(self, reason: str) -> None:
        """A newer primary exists: never acknowledge anything again, and exit for the watchdog to restart us."""
        if self.fenced:
            return
        self.fenced = True
        self.held.clear()
        self.server.drop_outbox()
        log.warning("demoting myself (epoch %d): %s", self.server.epoch, reason)
        self.server.exit_code = DEMOTED
        self.server.stop()

    def status(self) -> dict[str, Any]:
        server = self.server
        out = {"role": "demoted" if self.fenced else server.role, "epoch": server.epoch, "boot": server.boot,
               "mode": self.mode(), "tuples": len(server.store.live)}
        if server.link is not None:
            out.update(server.link.status())
        if server.sink is not None and server.sink.stream is not None:
            out["applied"] = server.sink.stream[1]
        return out

    def mode(self) -> str:
        """solo; pairing (replies wait for the replica, which may still lack batches acknowledged alone); or
        paired (the replica holds every batch ever acknowledged: only now may the watchdog promote it)."""
        if not self.require_ack:
            return "solo"
        link = self.server.link
        return "paired" if link is not None and link.acked >= self._pair_from else "pairing"

    def command(self, msg: dict[str, Any]) -> dict[str, Any]:
        """promote / solo / pair / demote, from the watchdog; refused when its epoch is older than ours."""
        server = self.server
        epoch, name = msg.get("epoch"), msg.get("command")
        if type(epoch) is not int or epoch < server.epoch:
            return {"error": f"command {name} at epoch {epoch!r} is older than epoch {server.epoch}"}
        self.adopt_epoch(epoch)
        if name == "demote":
            self.demote(f"the watchdog says epoch {epoch}")
        elif name == "promote":
            self._promote()
        elif name == "solo":
            self.require_ack = False
            server.call_soon(self.release)
        elif name == "pair":
            if server.link is None or not server.link.status()["synced"]:
                return {"error": "the secondary is not in sync yet"}
            lease = msg.get("lease")
            if isinstance(lease, int | float) and lease > 0:
                self.read_lease = float(lease)
            if not self.require_ack:
                self._pair_from = server.link.lsn  # batches up to here were acknowledged alone
            self.require_ack = True
        else:
            return {"error": f"unknown command {name!r}"}
        log.info("%s at epoch %d", name, epoch)
        return {"ok": True, "status": self.status()}

    def _promote(self) -> None:
        server = self.server
        if server.role == "primary":
            return
        server.role = "primary"
        server.regexes.python.start()
        sink = server.sink
        if sink is not None:
            sink.settle()
            sink.abort_snapshot()
            sink.stream = None
        if not server.peer:  # else the disk keeps the label of the stream it holds: its own starts from there
            server.durable.forget_stream()
        if sink is not None and sink.live:  # the memory holds every acknowledged batch already
            server.durable.new_generation(server.store)
            server.store.arm()
        else:  # the disk does
            server.store.reset()
            server.replies.clear()
            server.load()
        if sink is not None:
            server.store.history.extend(sink.events())
        self.require_ack = False
        if server.peer:
            server.link = PrimaryLink(server, server.peer)
            self.start_link()
        server.bind_standby()
        server.write_info()
        server.call_soon(server.store.reap)
