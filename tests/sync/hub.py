"""A real sync hub for tests: ``onitu start`` with N local replicas of one folder, and ways to look at them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.supervision.harness import Onitu


def sha(data: bytes) -> str:
    """The sha256 of ``data``, as :func:`tree` gives it."""
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """``{relative path: sha256 or "dir"}`` of a replica, Onitu's own names left out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".onitu-")]
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            found[os.path.normpath(os.path.join(rel, d))] = "dir"
        for f in filenames:
            if f.startswith(".onitu-"):
                continue
            try:
                data = Path(dirpath, f).read_bytes()
            except FileNotFoundError:  # moved away (a conflict copy set apart) since the listing: not there
                continue
            found[os.path.normpath(os.path.join(rel, f))] = hashlib.sha256(data).hexdigest()
    return found


class Hub(Onitu):
    """``onitu start`` with services ``names`` (local drivers under ``tmp/<name>``) sharing the folder ``docs``."""

    def __init__(self, tmp: Path, names: tuple[str, ...] = ("a", "b", "c"), folder_options: str = "",
                 sync: str = "", settle: float = 0.1, services_extra: dict[str, str] | None = None) -> None:
        self.roots = {name: tmp / name for name in names}
        lines = ["folders:", f"  docs: {{{folder_options}}}", "services:"]
        for name, root in self.roots.items():
            extra = (services_extra or {}).get(name, "")
            lines.append(f"  {name}: {{driver: local, options: {{root: {root}, settle: {settle}}}, "
                         f"folders: {{docs: {{{extra}}}}}}}")
        if sync:
            lines.append(f"sync: {{{sync}}}")
        super().__init__(tmp, "\n".join(lines) + "\n")

    def start(self, paired: bool = True) -> Hub:
        for root in self.roots.values():
            root.mkdir(parents=True, exist_ok=True)
        super().start(paired)
        self.wait(lambda s: all(p["state"] == "running" for p in s.get("processes", [])
                                if p["name"].startswith(("plug-", "referee"))), 30, "sync agents")
        return self

    def converged(self, names: tuple[str, ...] | None = None) -> bool:
        trees = [tree(self.roots[n]) for n in names or self.roots]
        return all(t == trees[0] for t in trees[1:])

    def wait_for(self, pred: Callable[[], bool], timeout: float = 30.0, what: str = "convergence") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        trees = {n: tree(r) for n, r in self.roots.items()}
        raise AssertionError(f"timed out waiting for {what}: {json.dumps(trees, indent=1)[:3000]}\n"
                             f"{self.agent_logs()}")

    def wait_converged(self, timeout: float = 30.0, expect: Callable[[dict[str, str]], bool] | None = None) -> dict:
        """Wait until every replica has the same tree (and ``expect`` accepts it); return that tree."""
        def ok() -> bool:
            return self.converged() and (expect is None or expect(tree(next(iter(self.roots.values())))))
        self.wait_for(ok, timeout)
        return tree(next(iter(self.roots.values())))

    def agent_logs(self) -> str:
        run = self.data / "run"
        parts = []
        for log in sorted(run.glob("*.log")) if run.exists() else []:
            if log.name.startswith(("plug-", "referee")):
                parts.append(f"--- {log.name}\n{log.read_text()[-1500:]}")
        return "\n".join(parts)

    def onitu(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``onitu ARGS -c CONFIG``."""
        out = subprocess.run([sys.executable, "-m", "onitu.cli", *args, "-c", str(self.config)],
                             capture_output=True, text=True, timeout=60)
        if check:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def pid(self, name: str) -> int:
        return int(self.process(name)["pid"])

    def status_json(self) -> dict[str, Any]:
        return json.loads(self.onitu("status", "--json").stdout)


def running_hub(tmp: Path) -> Iterator[Hub]:
    """A :class:`Hub` for a fixture: stopped afterwards, and killed if it will not stop."""
    hub = Hub(tmp)
    yield hub
    try:
        hub.stop()
    finally:
        hub.kill_everything()


def wait_settled(hub: Hub, expect: Callable[[dict[str, str]], bool] | None = None, timeout: float = 60.0
                 ) -> dict[str, str]:
    """Like :meth:`Hub.wait_converged`, except that a file moving or vanishing while the replicas are read (the hub
    is busy with them) is a reason to look again, not an error. Returns the common tree."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trees = [tree(root) for root in hub.roots.values()]
        except OSError:
            continue
        if all(t == trees[0] for t in trees[1:]) and (expect is None or expect(trees[0])):
            return trees[0]
        time.sleep(0.1)
    return hub.wait_converged(0.0, expect)  # one last look, failing with the trees and the agents' logs
