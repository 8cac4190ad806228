"""The conformance suite on the SFTP driver against OpenSSH's sshd, plus the host key checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onitu.sync.drivers import open_driver
from tests.conformance.served import FAST, served_harness
from tests.conformance.suite import DriverConformance, Harness
from tests.servers import SftpServer


@pytest.fixture
def harness(sftp_server: SftpServer) -> Iterator[Harness]:
    options = {k: v for k, v in sftp_server.options.items() if k != "root"}
    yield from served_harness("sftp", sftp_server.directory,
                              lambda sub: {**options, "root": str(sftp_server.directory / sub)})


class TestSFTPConformance(DriverConformance):
    """Every conformance test, on a directory served by sshd."""


def test_unknown_host_key_is_refused_with_a_clear_error(sftp_server: SftpServer, tmp_path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    driver = open_driver("sftp", "sftp", {**sftp_server.options, "known_hosts": str(other), **FAST})
    status = driver.available()
    assert not status and "not trusted" in status.reason and "ssh-keyscan" in status.reason
    missing = open_driver("sftp", "sftp", {**sftp_server.options, "known_hosts": str(tmp_path / "none"), **FAST})
    assert "does not exist" in missing.available().reason
