"""The space pair: which server is primary, at which epoch, and whether it must wait for its secondary.

Decisions are written to ``DATA/watchdog.json`` (fsync'd) before any server hears of them, so a watchdog that
restarts, or a server that comes back, can never act on an older one. The rules:

- ``paired``: the primary answers only after the secondary made each batch durable, so the secondary holds
  everything acknowledged. If the primary dies or hangs, the secondary is promoted (epoch + 1, ``solo``) and the
  old slot restarts as the new secondary. If the secondary dies, the primary is told to go ``solo`` (epoch + 1).
- ``solo``: the primary answers alone; its secondary may lag, so it is never promoted. If the primary dies it
  is restarted in place. Once the secondary reports it is in sync, the pair goes back to ``paired`` (epoch + 1).
- A primary that hung and was superseded is fenced: it cannot get a batch acknowledged at its old epoch, it is
  told to demote itself if it answers again, and its process group is killed after ``stale_grace`` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from onitu.config import Config
from onitu.space import auth
from onitu.supervision.supervisor import BACKOFF, FAILED, RUNNING, STALE, STARTING, Child, Spec, Supervisor

log = logging.getLogger("onitu.supervision.failover")

SLOTS = ("space-a", "space-b")


@dataclass
class PairState:
    epoch: int = 0
    primary: str = SLOTS[0]
    mode: str = "solo"
    failovers: int = 0  # promotions of the secondary, since the data directory was made

    @property
    def secondary(self) -> str:
        return SLOTS[1] if self.primary == SLOTS[0] else SLOTS[0]


def load_state(path: Path) -> PairState:
    try:
        raw = json.loads(path.read_text())
        state = PairState(int(raw["epoch"]), str(raw["primary"]), str(raw["mode"]), int(raw.get("failovers", 0)))
    except FileNotFoundError:
        return PairState()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"{path}: unreadable watchdog state ({exc}); move it away to start afresh") from exc
    if state.primary not in SLOTS or state.mode not in ("solo", "paired"):
        raise RuntimeError(f"{path}: unexpected watchdog state {raw!r}")
    return state


def save_state(path: Path, state: PairState) -> None:
    """Durably: the new file is fsync'd and renamed over the old one, and the directory fsync'd."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(asdict(state), f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


class SpacePair:
    """Runs the two space servers through the supervisor and applies the failover rules each tick."""

    def __init__(self, sup: Supervisor, config: Config, stale_grace: float = 5.0) -> None:
        self.sup, self.config, self.stale_grace = sup, config, stale_grace
        self.data = config.data
        self.state_path = self.data / "watchdog.json"
        self.state = load_state(self.state_path)
        self._stale_since: dict[str, float] = {}
        self._pending: dict[int, str] = {}
        self._last_told = 0.0
        self._asked_pair = False

    def dir(self, slot: str) -> Path:
        return self.data / slot

    def client_endpoint(self, slot: str) -> str:
        return f"ipc://{self.dir(slot) / 'space.sock'}"

    def replica_endpoint(self, slot: str) -> str:
        return f"ipc://{self.dir(slot) / 'replica.sock'}"

    def spec(self, slot: str, role: str) -> Spec:
        other = SLOTS[1] if slot == SLOTS[0] else SLOTS[0]
        space = self.config.space
        cmd = [sys.executable, "-m", "onitu.cli", "space", "serve", "--data", str(self.dir(slot)),
               "--listen", self.client_endpoint(slot), "--role", role, "--epoch", str(self.state.epoch),
               "--replica-listen", self.replica_endpoint(slot), "--peer", self.replica_endpoint(other),
               "--sync", space.sync, "--no-discovery", "--keys", str(self.data)]
        for endpoint in space.listen:  # bound by whichever server is primary, so remote clients follow it
            cmd += ["--standby", endpoint]
        if space.insecure_loopback:
            cmd.append("--insecure-loopback")
        return Spec(slot, cmd, heartbeat=True, role=role, fence_on_hang=True, never_give_up=True)

    def start(self, adopt: bool = False) -> None:
        """A new epoch for this watchdog's reign; start (or adopt) both servers, primary first."""
        self.bump(self.state.mode if adopt else "solo")
        self.publish()  # before the servers start: it makes the shared CURVE keys they will load
        for slot in (self.state.primary, self.state.secondary):
            self.dir(slot).mkdir(parents=True, exist_ok=True)
            role = "primary" if slot == self.state.primary else "secondary"
            self.sup.add(self.spec(slot, role), start=not adopt)

    def bump(self, mode: str, primary: str | None = None) -> None:
        self._asked_pair = False
        failovers = self.state.failovers + (primary is not None and primary != self.state.primary)
        self.state = PairState(self.state.epoch + 1, primary or self.state.primary, mode, failovers)
        save_state(self.state_path, self.state)
        for slot in SLOTS:  # restarts use the current epoch and role
            if slot in self.sup.children:
                role = "primary" if slot == self.state.primary else "secondary"
                self.sup.children[slot].spec = self.spec(slot, role)

    def describe(self, local: bool) -> dict[str, object]:
        """Where clients find the space: both servers (the primary first) on this host, the tcp ones elsewhere."""
        ipc = [self.client_endpoint(self.state.primary), self.client_endpoint(self.state.secondary)]
        listen = self.config.space.listen
        secure = not self.config.space.insecure_loopback and any(ep.startswith("tcp://") for ep in listen)
        return {"endpoints": [*ipc, *listen] if local else list(listen), "epoch": self.state.epoch,
                "public_key": auth.ensure_server_keys(self.data)[0].decode() if secure else None}

    def publish(self) -> None:
        """``DATA/space.json``: both endpoints, the primary first, for clients to follow."""
        info = {**self.describe(True), "primary": self.state.primary, "pid": os.getpid()}
        tmp = self.data / "space.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.data / "space.json")

    def command(self, child: Child, name: str) -> None:
        self._last_told = time.monotonic()
        # The read lease must run out before the watchdog could declare the primary dead and promote another.
        lease = self.sup.hb.interval * self.sup.hb.misses / 2
        n = self.sup.send(child, {"op": "command", "command": name, "epoch": self.state.epoch, "lease": lease})
        self._pending[n] = f"{name} to {child.name}"

    # ---- the rules ---------------------------------------------------------------------------------------

    def tick(self) -> None:
        primary = self.sup.children[self.state.primary]
        secondary = self.sup.children[self.state.secondary]
        self._check_replies()
        lost = primary.state in (BACKOFF, FAILED, STALE) and primary.reason != "demoted"
        if lost and self.state.mode == "paired" and secondary.state == RUNNING:
            self._promote(primary, secondary)
            return
        if lost and self.state.mode == "paired":
            log.error("primary %s lost and secondary %s not running: restarting the primary in place",
                      primary.name, secondary.name)
            self.bump("solo")
        elif lost:  # a solo primary is restarted in place, alone: a pairing asked of it died with it, ask again
            self._asked_pair = False
        if secondary.state in (BACKOFF, FAILED, STALE) and (self.state.mode == "paired" or self._asked_pair):
            log.warning("secondary %s lost (%s): primary %s goes on alone", secondary.name, secondary.reason,
                        primary.name)
            self.bump("solo")
            self.command(primary, "solo")
        elif self.state.mode == "solo" and primary.state == RUNNING and secondary.state == RUNNING:
            self._pair(primary)
        self._reconcile(primary)
        self._fence_stale(primary, secondary)
        self._tell_old_epochs()

    def _pair(self, primary: Child) -> None:
        """Ask a primary with a synced replica to wait for it; record "paired" only once it says the replica
        holds everything it acknowledged alone (until then a failover would lose those writes)."""
        status = primary.last_status
        if status.get("mode") == "paired" and status.get("epoch") == self.state.epoch:
            self.bump("paired")
            self.command(primary, "pair")  # the new epoch
        elif status.get("synced") and status.get("mode") == "solo" and not self._asked_pair:
            self._asked_pair = True
            self.command(primary, "pair")

    def _reconcile(self, primary: Child) -> None:
        """Re-send what the primary has not taken in yet (a lost command, or a new watchdog's epoch)."""
        status = primary.last_status
        if primary.state != RUNNING or not status or time.monotonic() - self._last_told < self.sup.hb.interval * 2:
            return
        mode = status.get("mode")
        if status.get("epoch", 0) >= self.state.epoch and status.get("role") == "primary" and (
                mode == self.state.mode or (self.state.mode == "solo" and mode in ("pairing", "paired")
                                             and self._asked_pair)):
            return
        self._last_told = time.monotonic()
        if status.get("role") == "secondary":
            self.command(primary, "promote")
        else:
            self.command(primary, "pair" if self.state.mode == "paired" else "solo")

    def _promote(self, old: Child, new: Child) -> None:
        log.warning("primary %s lost (%s): promoting %s", old.name, old.reason or old.state, new.name)
        self.bump("solo", primary=new.name)
        self.command(new, "promote")
        # Promotion loads the replica's database on the server's event loop: as long as a start may take.
        self.sup.grace(new, self.sup.hb.startup)
        self.publish()

    def _fence_stale(self, primary: Child, secondary: Child) -> None:
        now = time.monotonic()
        for child in (primary, secondary):
            if child.state != STALE:
                self._stale_since.pop(child.name, None)
                continue
            since = self._stale_since.setdefault(child.name, now)
            if now - since > self.stale_grace:
                log.warning("%s did not come back within %.0f s; killing it", child.name, self.stale_grace)
                self.sup.kill(child)
                child.reason = "stale, killed"
                self.sup.restart_soon(child)

    def _tell_old_epochs(self) -> None:
        for child in self.sup.children.values():
            epoch = child.last_status.get("epoch")
            if child.spec.heartbeat and child.state in (RUNNING, STARTING, STALE) and isinstance(epoch, int) \
                    and epoch < self.state.epoch and child.last_status.get("role") == "primary" \
                    and child.name != self.state.primary:
                self.command(child, "demote")

    def _check_replies(self) -> None:
        for n in [n for n in self._pending if n in self.sup.replies]:
            reply, what = self.sup.replies.pop(n), self._pending.pop(n)
            if "error" in reply:
                log.info("%s refused: %s", what, reply["error"])
                if what.startswith("pair") and self.state.mode == "solo":
                    self._asked_pair = False  # not in sync after all: stay alone, ask again later
            else:
                log.info("%s done", what)

    def role(self, child: Child) -> str | None:
        """What ``child`` is to the status: a process that is not running holds no role, and only the server
        recorded as primary is the primary (whatever a server that has not heard of a promotion says of itself)."""
        if child.state not in (RUNNING, STARTING):
            return None
        if child.name not in SLOTS:
            return child.spec.role
        return "primary" if child.name == self.state.primary else "secondary"

    def status(self) -> dict[str, object]:
        return asdict(self.state)
