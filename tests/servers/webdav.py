"""wsgidav on cheroot, on loopback in a process of its own, serving a temporary folder with one user (basic auth);
each test gets a fresh collection in it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.servers.common import files_under, fresh_name
from tests.servers.process import ServerProcess

USER, PASSWORD = "onitu", "dav-secret"


@dataclass
class WebdavServer:
    """What a ``webdav`` service needs: ``options`` uses the driver's option names (``url`` is the test's
    collection); ``directory`` is that collection on the served disk."""

    driver: ClassVar[str] = "webdav"
    url: str
    username: str
    password: str
    directory: Path
    process: ServerProcess = field(repr=False)

    @property
    def options(self) -> dict[str, Any]:
        return {"url": self.url, "username": self.username, "password": self.password}

    def files(self) -> dict[str, str]:
        """``{path: sha256}`` of the files in the test's collection, read from the served disk."""
        return files_under(self.directory)


def _config(share: Path) -> dict[str, Any]:
    return {
        "server": "cheroot",
        "provider_mapping": {"/": str(share)},
        "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
        "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False,
                               "default_to_digest": False},
        "property_manager": True,
        "lock_storage": True,
        "verbose": 1,
        "logging": {"enable_loggers": []},
    }


@contextmanager
def webdav_process(share: Path, base: Path) -> Iterator[ServerProcess]:
    """wsgidav serving ``share`` read-write on a free port, configured by a file in ``base``."""
    share.mkdir(parents=True, exist_ok=True)
    config = base / "wsgidav.yaml"
    config.write_text(yaml.safe_dump(_config(share)))
    proc = ServerProcess("wsgidav", lambda port: [
        sys.executable, "-m", "wsgidav.server.server_cli", "--host", "127.0.0.1", "--port", str(port),
        "--config", str(config)], base / "wsgidav.log").start()
    try:
        yield proc
    finally:
        proc.stop()


def webdav_server_in(proc: ServerProcess, share: Path, name: str) -> WebdavServer:
    """The test's view of ``proc``: the collection ``name`` (made here, on disk) of the share."""
    (share / name).mkdir(parents=True, exist_ok=True)
    return WebdavServer(f"http://127.0.0.1:{proc.port}/{name}/", USER, PASSWORD, share / name, proc)


@pytest.fixture(scope="session")
def webdav_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """The session's wsgidav server and the folder it shares."""
    base = tmp_path_factory.mktemp("webdav")
    with webdav_process(base / "share", base) as proc:
        yield proc, base / "share"


@pytest.fixture
def webdav_server(webdav_session: tuple[ServerProcess, Path]) -> WebdavServer:
    """The session's wsgidav server, seen through a collection of its own for this test."""
    return webdav_server_in(*webdav_session, fresh_name())
