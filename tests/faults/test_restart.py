"""What a kill -9 must not change: lease deadlines, sessions, and the answer to a retried take."""

from __future__ import annotations

import time

from onitu.space import connect
from onitu.space.protocol import OK
from tests.helpers import ServerProcess
from tests.space.test_server import Raw


def test_lease_deadlines_survive_kill9(server):
    with connect(server.ipc) as space:
        space.write(["short"], lease=6)  # long enough for a restart on a loaded machine (tests run 3 at a time)
        written = time.monotonic()
        space.write(["long"], lease=60)
        space.write(["forever"])
    server.kill9()
    server.start()
    with connect(server.ipc) as space:
        assert sorted(space.read_all([None])) == [("forever",), ("long",), ("short",)]
        time.sleep(max(0.0, written + 6.1 - time.monotonic()))
        assert sorted(space.read_all([None])) == [("forever",), ("long",)]


def test_retried_take_after_kill9_returns_the_same_tuple(tmp_path):
    data = tmp_path / "space"
    data.mkdir()
    srv = ServerProcess(data).start()
    raw = Raw(srv.ipc)
    try:
        assert raw.call("hello", {"ttl": 30})[1] == OK
        raw.call("write", {"t": ["job", 1]})
        raw.call("write", {"t": ["job", 2]})
        _, status, took = raw.call("take", {"p": ["job", None], "timeout": 0}, seq=50)
        assert status == OK and took == ["job", 1]
        srv.kill9()  # as if the reply had been lost: the client will retry the same request
        srv.start()
        assert raw.call("take", {"p": ["job", None], "timeout": 0}, seq=50)[1:] == (OK, ["job", 1])
        assert raw.call("read_all", {"p": ["job", None]})[2] == [["job", 2]]
    finally:
        raw.close()
        srv.stop()


def test_session_leases_outlive_a_restart_while_the_client_lives(server):
    with connect(server.ipc, session_ttl=2.0) as space:
        space.write(["mine"], lease="session")
        server.kill9()
        server.start()
        time.sleep(2.5)  # longer than the TTL: the client's keepalives kept the restored session alive
        assert space.read_all(["mine"]) == [("mine",)]
