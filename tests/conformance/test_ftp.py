"""The conformance suite on the FTP driver against pyftpdlib."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onitu.sync.drivers import open_driver
from tests.conformance.served import FAST, served_harness
from tests.conformance.suite import DriverConformance, Harness
from tests.servers import FtpServer


@pytest.fixture
def harness(ftp_server: FtpServer) -> Iterator[Harness]:
    options = ftp_server.options
    yield from served_harness("ftp", ftp_server.directory,
                              lambda sub: {**options, "root": f"{options['root']}/{sub}"})


class TestFTPConformance(DriverConformance):
    """Every conformance test, on a directory served by pyftpdlib."""


def test_wrong_password_is_unavailable_with_the_reason(ftp_server: FtpServer) -> None:
    driver = open_driver("ftp", "ftp", {**ftp_server.options, "password": "wrong", **FAST})
    status = driver.available()
    assert not status and "login refused" in status.reason
