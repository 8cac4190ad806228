"""A running hub with its API, and a real HTTP client for it: ``onitu start`` with local replicas a, b, c of two
folders (``docs`` and ``vault``), the API on a free loopback port, and a reader of its server-sent events."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.supervision.harness import Onitu
from tests.sync.hub import Hub


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiHub(Hub):
    """Services a, b, c (roots ``tmp/<name>``) holding ``docs`` in ``<root>/docs`` and ``vault`` in
    ``<root>/vault``; ``roots`` are the docs replicas, ``vaults`` the vault ones."""

    def __init__(self, tmp: Path, names: tuple[str, ...] = ("a", "b", "c")) -> None:
        self.tmp, self.port = tmp, free_port()
        self.services = {name: tmp / name for name in names}
        self.roots = {name: root / "docs" for name, root in self.services.items()}
        self.vaults = {name: root / "vault" for name, root in self.services.items()}
        lines = ["# the API tests' hub (this comment must survive edits)", "folders:", "  docs: {}  # shared",
                 "  vault: {}", "sync: {deletion_threshold: 0.5}", "services:"]
        for name, root in self.services.items():
            lines.append(f"  {name}: {{driver: local, options: {{root: {root}, settle: 0.1}}, "
                         f"folders: {{docs: docs, vault: vault}}}}")
        Onitu.__init__(self, tmp, "\n".join(lines) + "\n", api=f"127.0.0.1:{self.port}")
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, paired: bool = True) -> ApiHub:
        for path in (*self.roots.values(), *self.vaults.values()):
            path.mkdir(parents=True, exist_ok=True)
        super().start(paired)
        self.wait(lambda s: any(p["name"] == "api" and p["state"] == "running" for p in s["processes"]), 30, "api")
        return self

    @property
    def token(self) -> str:
        return (self.data / "api.token").read_text().strip()

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {token or self.token}"})

    def wait_api(self, timeout: float = 30.0) -> None:
        """Until the API answers (after a restart)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client().get("/api/space").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the API did not come back: {self.logs()}")


class Stream:
    """``GET /api/events`` read in a thread: every event (name, id, data) lands in a queue."""

    def __init__(self, hub: ApiHub, last_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {hub.token}"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        self.client = httpx.Client(base_url=hub.url, timeout=httpx.Timeout(30, read=None))
        self.response = self.client.send(self.client.build_request("GET", "/api/events", headers=headers),
                                         stream=True)
        assert self.response.status_code == 200, self.response.read()
        self.events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.last_id: str | None = None
        self.backlog: list[tuple[str, str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name, eid, data = "message", None, []
        try:
            for line in self.response.iter_lines():
                if not line:
                    if data:
                        self.events.put((name, eid, json.loads("\n".join(data))))
                    name, eid, data = "message", None, []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("id:"):
                    eid = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        except (httpx.HTTPError, OSError):
            pass  # closed by the test, or the API went away
        self.events.put(("closed", None, None))

    def expect(self, pred: Callable[[str, Any], bool], timeout: float = 30.0, what: str = "an event"
               ) -> tuple[str, str, Any]:
        """The first event not yet returned that ``pred(name, data)`` accepts, in the order they came (events
        passed over stay for later calls); the id of the last event read is :attr:`last_id`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (name, eid, data) in enumerate(self.backlog):
                if pred(name, data):
                    del self.backlog[i]
                    return name, eid, data
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                names = [e[0] for e in self.backlog]
                raise AssertionError(f"no {what} within {timeout} s; saw {names[-30:]}") from None
            if event[1] is not None:
                self.last_id = event[1]
            self.backlog.append(event)

    def close(self) -> None:
        self.response.close()
        self.client.close()
