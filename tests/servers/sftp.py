"""OpenSSH's ``sshd`` (Debian ``openssh-server``) on loopback in the foreground (``-D``), with a temporary config,
host key and authorized client key, logging in the user running the tests (root included); each test gets a fresh
folder. The client trusts the host key through a ``known_hosts`` file written for the port."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.servers.common import files_under, fresh_name
from tests.servers.process import ServerProcess

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: it must be started by its absolute path


@dataclass
class SftpServer:
    """What an ``sftp`` service needs: ``options`` uses the driver's option names (``root`` is the test's folder,
    an absolute path, the same on the server and here since both are this machine)."""

    driver: ClassVar[str] = "sftp"
    host: str
    port: int
    username: str
    key_file: Path
    known_hosts: Path
    directory: Path
    process: ServerProcess = field(repr=False)

    @property
    def options(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "username": self.username, "key_file": str(self.key_file),
                "known_hosts": str(self.known_hosts), "root": str(self.directory)}

    def files(self) -> dict[str, str]:
        """``{path: sha256}`` of the files in the test's folder, read from disk."""
        return files_under(self.directory)


def _sshd_version() -> tuple[int, int]:
    out = subprocess.run([SSHD, "-V"], capture_output=True, text=True).stderr
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def keygen(path: Path) -> Path:
    """A fresh ed25519 key pair at ``path`` (and ``path``.pub), without a passphrase."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "onitu-test", "-f", str(path)], check=True)
    return path


def _config(base: Path) -> str:
    lines = [
        f"HostKey {base / 'host_ed25519'}",
        f"AuthorizedKeysFile {base / 'authorized_keys'}",
        f"PidFile {base / 'sshd.pid'}",
        "ListenAddress 127.0.0.1",
        "PermitRootLogin prohibit-password",  # the suite may run as root (CI does)
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # keys in a temporary directory whatever its modes
        "MaxStartups 200",  # many plugs and transfers connect at once
        "MaxSessions 200",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "PrintMotd no",
        "Subsystem sftp internal-sftp",
    ]
    if _sshd_version() >= (9, 8):
        lines.append("PerSourcePenalties no")  # else failed logins and killed clients get 127.0.0.1 refused
    return "\n".join(lines) + "\n"


@contextmanager
def sftp_process(base: Path) -> Iterator[tuple[ServerProcess, Path, Path]]:
    """sshd on a free port with its files in ``base``; yields it, the client key and the known_hosts file."""
    if shutil.which(SSHD) is None:
        pytest.skip(f"{SSHD} is missing: install Debian's openssh-server (.ci/run does)")
    base.mkdir(parents=True, exist_ok=True)
    keygen(base / "host_ed25519")
    client = keygen(base / "client_ed25519")
    shutil.copy(client.with_suffix(".pub"), base / "authorized_keys")
    (base / "sshd_config").write_text(_config(base))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # root's sshd insists on its privilege separation directory
    subprocess.run([SSHD, "-t", "-f", str(base / "sshd_config")], check=True)
    proc = ServerProcess("sshd", lambda port: [SSHD, "-D", "-e", "-f", str(base / "sshd_config"), "-p", str(port)],
                         base / "sshd.log").start()
    try:
        host_key = (base / "host_ed25519.pub").read_text().split()[:2]
        known_hosts = base / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{proc.port} {' '.join(host_key)}\n")
        yield proc, client, known_hosts
    finally:
        proc.stop()


def sftp_server_in(proc: ServerProcess, client_key: Path, known_hosts: Path, directory: Path) -> SftpServer:
    """The test's view of ``proc``: the folder ``directory``, made here."""
    directory.mkdir(parents=True, exist_ok=True)
    return SftpServer("127.0.0.1", proc.port, getpass.getuser(), client_key, known_hosts, directory, proc)


@pytest.fixture(scope="session")
def sftp_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path, Path, Path]]:
    """The session's sshd, its client key, known_hosts file and a folder for the tests' folders."""
    base = tmp_path_factory.mktemp("sftp")
    with sftp_process(base / "sshd") as (proc, client, known_hosts):
        yield proc, client, known_hosts, base / "served"


@pytest.fixture
def sftp_server(sftp_session: tuple[ServerProcess, Path, Path, Path]) -> SftpServer:
    """The session's sshd, seen through a folder of its own for this test."""
    proc, client, known_hosts, served = sftp_session
    return sftp_server_in(proc, client, known_hosts, served / fresh_name())
