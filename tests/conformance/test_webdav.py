"""The conformance suite on the WebDAV driver against wsgidav."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onitu.sync.drivers import open_driver
from tests.conformance.served import FAST, served_harness
from tests.conformance.suite import DriverConformance, Harness
from tests.servers import WebdavServer


@pytest.fixture
def harness(webdav_server: WebdavServer) -> Iterator[Harness]:
    options = webdav_server.options
    yield from served_harness("webdav", webdav_server.directory,
                              lambda sub: {**options, "url": f"{options['url'].rstrip('/')}/{sub}"})


class TestWebDAVConformance(DriverConformance):
    """Every conformance test, on a collection served by wsgidav."""


def test_wrong_password_is_unavailable_with_the_reason(webdav_server: WebdavServer) -> None:
    driver = open_driver("webdav", "webdav", {**webdav_server.options, "password": "wrong", **FAST})
    status = driver.available()
    assert not status and "password" in status.reason
