"""pyftpdlib on loopback: one user whose login directory is a temporary folder; each test gets a fresh folder in it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.servers.common import files_under, fresh_name
from tests.servers.process import ServerProcess

USER, PASSWORD = "onitu", "ftp-secret"


@dataclass
class FtpServer:
    """What an ``ftp`` service needs: ``options`` uses the driver's option names (``root`` is the test's folder,
    an absolute path in the FTP namespace, whose login directory is ``home``). ``directory`` is that folder on disk."""

    driver: ClassVar[str] = "ftp"
    host: str
    port: int
    username: str
    password: str
    home: Path
    root: str
    process: ServerProcess = field(repr=False)

    @property
    def directory(self) -> Path:
        return self.home / self.root.lstrip("/")

    @property
    def options(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "username": self.username, "password": self.password,
                "root": self.root}

    def files(self) -> dict[str, str]:
        """``{path: sha256}`` of the files in the test's folder, read from the served disk."""
        return files_under(self.directory)


@contextmanager
def ftp_process(home: Path, log: Path) -> Iterator[ServerProcess]:
    """A pyftpdlib server of ``home`` (read-write for USER) on a free port, stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    proc = ServerProcess("pyftpdlib", lambda port: [
        sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port), "-w", "-d", str(home),
        "-u", USER, "-P", PASSWORD], log).start()
    try:
        yield proc
    finally:
        proc.stop()


def ftp_server_in(proc: ServerProcess, home: Path, root: str) -> FtpServer:
    """The test's view of ``proc``: the folder ``root`` (made here) below the login directory ``home``."""
    (home / root.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return FtpServer("127.0.0.1", proc.port, USER, PASSWORD, home, root, proc)


@pytest.fixture(scope="session")
def ftp_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """The session's pyftpdlib server and its login directory."""
    base = tmp_path_factory.mktemp("ftp")
    with ftp_process(base / "home", base / "ftp.log") as proc:
        yield proc, base / "home"


@pytest.fixture
def ftp_server(ftp_session: tuple[ServerProcess, Path]) -> FtpServer:
    """The session's pyftpdlib server, seen through a folder of its own for this test."""
    return ftp_server_in(*ftp_session, "/" + fresh_name())
