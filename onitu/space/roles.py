"""A space server's place in the pair: primary or secondary, its epoch, and the watchdog's commands.

The watchdog decides; servers obey only commands whose epoch is at least their own, and persist every epoch
they adopt, so a restarted server never forgets that it was superseded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import zmq

from onitu.space.protocol import packb
from onitu.space.replication import PrimaryLink

if TYPE_CHECKING:
    from onitu.space.server import SpaceServer

log = logging.getLogger("onitu.space.roles")

DEMOTED = 3  # exit status of a primary that learned it was superseded


class Roles:
    """Mixed into SpaceServer: role changes, fencing, and what the watchdog sees of this server."""

    fenced = False
    _repl_scheduled = False
    _pair_from = 0

    def _watch_replication(self: SpaceServer) -> None:
        if self.sink is not None:
            self._loop.add_reader(self.sink.sock.getsockopt(zmq.FD), self._turn, self._replication_in)
        if self.link is not None:
            self._start_link()
        self._replication_in()

    def _start_link(self: SpaceServer) -> None:
        self._loop.add_reader(self.link.sock.getsockopt(zmq.FD), self._turn, self._replication_in)
        self._probe()

    def _recheck_replication(self: SpaceServer) -> None:
        pending = [s for s in (self.sink.sock if self.sink else None, self.link.sock if self.link else None)
                   if s is not None and s.get(zmq.EVENTS) & zmq.POLLIN]
        if pending and not self._repl_scheduled and self._loop is not None:
            self._repl_scheduled = True
            self._loop.call_soon(self._turn, self._replication_in)

    def _probe(self: SpaceServer) -> None:
        """Ask the secondary where it stands (ack or need): until it is in sync, and while paired, often enough
        to keep the read lease fresh when no batch is flowing."""
        if self.link is not None and not self.fenced:
            self.link.probe(always=self.require_ack)
            every = self.read_lease / 3 if self.require_ack else 0.5
            self._loop.call_later(every, self._turn, self._probe)

    def _replication_in(self: SpaceServer) -> None:
        self._repl_scheduled = False
        if self.sink is not None:
            self.sink.receive(self._reply_replica)
        if self.link is not None:
            self.link.receive()

    def _reply_replica(self: SpaceServer, ident: bytes, msg: list) -> None:
        try:
            self.sink.sock.send_multipart([ident, packb(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counters["replication_dropped"] += 1

    def adopt_epoch(self: SpaceServer, epoch: int) -> None:
        if epoch > self.epoch:
            self.epoch = epoch
            self.durable.set_meta("epoch", epoch)

    def demote(self: SpaceServer, reason: str) -> None:
        """A newer primary exists: never acknowledge anything again, and exit for the watchdog to restart us."""
        if self.fenced:
            return
        self.fenced = True
        self._held.clear()
        self._outbox.clear()
        log.warning("demoting myself (epoch %d): %s", self.epoch, reason)
        self.exit_code = DEMOTED
        self.stop()

    def status(self: SpaceServer) -> dict[str, Any]:
        out = {"role": "demoted" if self.fenced else self.role, "epoch": self.epoch, "boot": self.boot,
               "mode": self.mode(), "tuples": len(self.store.live)}
        if self.link is not None:
            out.update(self.link.status())
        if self.sink is not None and self.sink.stream is not None:
            out["applied"] = self.sink.stream[1]
        return out

    def mode(self: SpaceServer) -> str:
        """solo; pairing (replies wait for the replica, which may still lack batches acknowledged alone); or
        paired (the replica holds every batch ever acknowledged: only now may the watchdog promote it)."""
        if not self.require_ack:
            return "solo"
        return "paired" if self.link is not None and self.link.acked >= self._pair_from else "pairing"

    def command(self: SpaceServer, msg: dict[str, Any]) -> dict[str, Any]:
        """promote / solo / pair / demote, from the watchdog; refused when its epoch is older than ours."""
        epoch, name = msg.get("epoch"), msg.get("command")
        if type(epoch) is not int or epoch < self.epoch:
            return {"error": f"command {name} at epoch {epoch!r} is older than epoch {self.epoch}"}
        self.adopt_epoch(epoch)
        if name == "demote":
            self.demote(f"the watchdog says epoch {epoch}")
        elif name == "promote":
            self._promote()
        elif name == "solo":
            self.require_ack = False
            self.call_soon(self.release)
        elif name == "pair":
            if self.link is None or not self.link.status()["synced"]:
                return {"error": "the secondary is not in sync yet"}
            lease = msg.get("lease")
            if isinstance(lease, int | float) and lease > 0:
                self.read_lease = float(lease)
            if not self.require_ack:
                self._pair_from = self.link.lsn  # batches up to here were acknowledged alone
            self.require_ack = True
        else:
            return {"error": f"unknown command {name!r}"}
        log.info("%s at epoch %d", name, epoch)
        return {"ok": True, "status": self.status()}

    def _promote(self: SpaceServer) -> None:
        if self.role == "primary":
            return
        self.role = "primary"
        if self.sink is not None:
            self.sink.abort_snapshot()
        self._load()  # the replica's disk holds every acknowledged batch
        if self.sink is not None:
            self.store.history.extend(self.sink.history)
        self.require_ack = False
        if self.peer:
            self.link = PrimaryLink(self, self.peer)
            self._start_link()
        self.bind_standby()
        self._write_info()
        self.call_soon(self.store.reap)
