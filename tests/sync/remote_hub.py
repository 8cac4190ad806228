"""``onitu start`` with one folder on a local service and on remote services served by tests/servers, and ways to
look at every replica through the servers' own storage (boto3, the served directories), never through Onitu's
drivers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tests.servers.common import files_under
from tests.supervision.harness import Onitu
from tests.sync.hub import Hub

POLL = 0.5  # seconds between two listings of a remote replica (10 s by default)


class Remote(Protocol):
    """What tests/servers' dataclasses have in common."""

    driver: str

    @property
    def options(self) -> dict[str, Any]: ...

    def files(self) -> dict[str, str]: ...


def visible(files: dict[str, str]) -> dict[str, str]:
    """``files`` less Onitu's own names (the root marker, staged transfers)."""
    return {p: sha for p, sha in files.items() if not any(part.startswith(".onitu-") for part in p.split("/"))}


class RemoteHub(Hub):
    """Services ``local`` (a directory under ``tmp``) and one per entry of ``remotes``, all holding the folder
    ``docs`` at their root. ``trees()`` reads every replica's files as ``{path: sha256}``."""

    def __init__(self, tmp: Path, remotes: dict[str, Remote], settle: float = 0.1,
                 options: dict[str, Any] | None = None) -> None:
        self.remotes = remotes
        self.roots = {"local": tmp / "local"}
        services = {"local": {"driver": "local", "options": {"root": str(self.roots["local"]), "settle": settle}}}
        for name, remote in remotes.items():
            opts = {**remote.options, "poll": POLL, "settle": settle, **(options or {}).get(name, {})}
            services[name] = {"driver": remote.driver, "options": opts}
        lines = ["folders:", "  docs: {}", "services:"]
        for name, service in services.items():  # JSON is YAML's flow style: quoting and unicode for free
            lines.append(f"  {name}: {json.dumps({**service, 'folders': {'docs': {}}})}")
        Onitu.__init__(self, tmp, "\n".join(lines) + "\n")

    @property
    def local(self) -> Path:
        return self.roots["local"]

    def trees(self) -> dict[str, dict[str, str]]:
        found = {"local": visible(files_under(self.local))}
        for name, remote in self.remotes.items():
            found[name] = visible(remote.files())
        return found

    def converged(self, names: tuple[str, ...] | None = None) -> bool:
        trees = self.trees()
        wanted = [trees[n] for n in names or trees]
        return all(t == wanted[0] for t in wanted[1:])

    def wait_for(self, pred: Callable[[], bool], timeout: float = 60.0, what: str = "convergence") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}: {json.dumps(self.trees(), indent=1)[:4000]}\n"
                             f"{self.status_text()}\n{self.agent_logs()}")

    def wait_converged(self, timeout: float = 60.0, expect: Callable[[dict[str, str]], bool] | None = None
                       ) -> dict[str, str]:
        """Wait until every replica holds the same files (and ``expect`` accepts them); return them."""
        def ok() -> bool:
            trees = list(self.trees().values())
            return all(t == trees[0] for t in trees[1:]) and (expect is None or expect(trees[0]))
        self.wait_for(ok, timeout)
        return visible(files_under(self.local))

    def status_text(self) -> str:
        return self.onitu("status", check=False).stdout[-3000:]

    def rows(self) -> dict[str, dict[str, Any]]:
        """``onitu status --json``'s row of each service for the folder ``docs``."""
        return self.status_json()["sync"]["folders"]["docs"]["services"]
