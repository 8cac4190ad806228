"""A space fixture that runs each test in-process and against a real server."""

from __future__ import annotations

import pytest

from onitu.space import TupleSpace, connect
from tests.helpers import ServerProcess


@pytest.fixture(params=["local", "remote"])
def ts(request, tmp_path):
    if request.param == "local":
        space = TupleSpace()
        yield space
        space.close()
        return
    data = tmp_path / "space"
    data.mkdir()
    srv = ServerProcess(data).start()
    client = connect(srv.ipc)
    yield client
    client.close()
    assert srv.stop() == 0, srv.read_log()  # a clean exit, and no traceback hidden in the log
