"""Pretend plugs for in-process referee tests: the referee runs on an in-process space; three plugs are played by
writing their tuples (listings, change reports, results of the orders the referee wrote)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from onitu.config import Config
from onitu.space import TupleSpace
from onitu.sync import tuples
from onitu.sync.decide.plan import Observed
from onitu.sync.referee import Referee

SERVICES = ("a", "b", "c")


def obs(path: str) -> Observed:
    if "." not in path.rsplit("/", 1)[-1]:
        return Observed("dir", None, 0, 1, f"d:{path}")
    data = path.encode()
    return Observed("file", hashlib.sha256(data).hexdigest(), len(data), 1, f"f:{path}")


class Plugs:
    """Three pretend plugs writing reports into the space the referee reads."""

    def __init__(self, space: TupleSpace, referee: Referee) -> None:
        self.space, self.referee, self.seq = space, referee, 0
        for service in SERVICES:
            space.write((tuples.PLUG, service, {"id": f"plug-{service}", "available": True}))
        referee._refresh_plugs()

    def report(self, service: str, entries: list[tuple[str, Observed | None]], scan: str | None = None) -> None:
        self.seq += 1
        body = {"folder": "docs", "scan": scan, "entries": [[p, tuples.obs_to_wire(o)] for p, o in entries]}
        self.referee.inbound((tuples.REPORT, service, f"plug-{service}", self.seq, body))

    def listing(self, paths: list[str]) -> None:
        for service in SERVICES:
            self.report(service, [(p, obs(p)) for p in paths], scan="begin")
            self.report(service, [], scan="end")

    def orders(self) -> list[tuple]:
        return self.space.read_all((tuples.ORDER, None, None, None))

    def actions(self) -> list[tuple[str, str, str]]:
        """(service, op, path) of every action of the orders waiting in the space, sorted."""
        return sorted((t[1], a["op"], a["path"]) for t in self.orders() for a in map(tuples.action_as_dict,
                                                                                       t[3]["actions"]))

    def done(self, order: tuple, ok: bool = True) -> None:
        """The result of ``order``, as its plug would send it (the entries: what its actions left)."""
        _, service, oid, body = order
        entries = [[a["path"], tuples.obs_to_wire(obs(a["path"])) if ok and a["op"] != "delete" else None]
                   for a in map(tuples.action_as_dict, body["actions"])]
        results = [{"ok": ok, "error": "" if ok else "failed"} for _ in body["actions"]]
        self.seq += 1
        self.space.take(order)
        result = {**body, "order": oid, "results": results, "entries": entries}
        self.referee.inbound((tuples.DONE, service, f"plug-{service}", self.seq, result))


def pretend_hub(tmp_path: Path) -> Iterator[tuple[Referee, Plugs]]:
    """A referee of the folder docs on services a, b, c, and their pretend plugs."""
    config = Config.model_validate({
        "folders": {"docs": {}},
        "services": {s: {"driver": "local", "options": {"root": str(tmp_path / s)}, "folders": {"docs": ""}}
                     for s in SERVICES}})
    space = TupleSpace()
    referee = Referee(config, space)
    plugs = Plugs(space, referee)
    yield referee, plugs
    space.close()


