"""Local blocking clients reach the server by the stream socket beside its ipc endpoint (onitu.space.unixconn):
the same requests as over zmq, and zmq where the stream socket cannot be had."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import msgpack
import pytest

from onitu.space import connect
from onitu.space import unixconn as unixconn_module
from onitu.space.aio import AsyncSpaceClient
from onitu.space.protocol import ERROR, parse_reply
from onitu.space.unixconn import UnixConnection, stream_path
from onitu.space.wire import frame_header
from tests.helpers import ServerProcess


def _transport(client) -> type:
    return type(client._sock())


def test_a_local_client_uses_the_stream_socket_beside_zmq_clients(tmp_path):
    srv = ServerProcess(tmp_path).start()
    try:
        client = connect(srv.ipc)
        assert _transport(client) is UnixConnection
        remote = connect(srv.tcp_endpoint, insecure=True)
        assert _transport(remote) is not UnixConnection
        events = client.notify("write", ("seen", None))
        for i in range(300):
            (client if i % 2 else remote).write(("seen", i))
        assert sorted(t[1] for t in remote.read_all(("seen", None))) == list(range(300))
        assert [events.next(5).tuple[1] for _ in range(300)] == list(range(300))
        assert client.take(("seen", 7)) == ("seen", 7)

        async def aio() -> tuple:
            ac = AsyncSpaceClient([srv.ipc])  # the asyncio client keeps zmq: both ways in serve one space
            await ac.open()
            try:
                return await ac.take(("seen", 8))
            finally:
                await ac.close()
        assert asyncio.run(aio()) == ("seen", 8)
        events.close()
        client.close()
        remote.close()
    finally:
        assert srv.stop() == 0, srv.read_log()
    assert not (tmp_path / "space.sock.stream").exists(), "the stream socket is removed with the server"


def test_a_client_started_before_its_server_waits_for_it(tmp_path):
    srv = ServerProcess(tmp_path)
    got: dict = {}

    def client() -> None:
        with connect(f"ipc://{tmp_path}/space.sock", connect_timeout=20) as c:
            got["transport"] = _transport(c)
            c.write(("early", 1))
            got["read"] = c.read(("early", None), timeout=5)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.5)
    srv.start()
    try:
        thread.join(30)
        assert got == {"transport": UnixConnection, "read": ("early", 1)}
    finally:
        srv.stop()


def test_a_client_carries_on_across_a_kill_9_and_restart_of_its_server(tmp_path):
    srv = ServerProcess(tmp_path).start()
    client = connect(srv.ipc, connect_timeout=20)
    try:
        assert _transport(client) is UnixConnection
        client.write(("before", 1))
        srv.kill9()
        srv.start()
        client.write(("after", 1))  # re-sent on a new connection, once the server is back
        assert client.read_all(("before", None)) == [("before", 1)]
        assert client.read_all(("after", None)) == [("after", 1)]
    finally:
        client.close()
        srv.stop()


def test_zmq_where_there_is_no_stream_socket(tmp_path, monkeypatch):
    srv = ServerProcess(tmp_path).start()
    try:
        monkeypatch.setattr(unixconn_module, "SUN_PATH_MAX", len(str(tmp_path)) + 12)  # ipc path fits, .stream not
        assert stream_path(srv.ipc) is None
        with connect(srv.ipc) as c:
            assert _transport(c) is not UnixConnection
            c.write(("long path", 1))
        monkeypatch.undo()
        (tmp_path / "space.sock.stream").unlink()  # a server that serves zmq alone (an older one)
        with connect(srv.ipc) as c:
            assert _transport(c) is not UnixConnection
            assert c.read(("long path", None), timeout=5) == ("long path", 1)
    finally:
        assert srv.stop() == 0, srv.read_log()


def _raw(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def _reply(sock: socket.socket) -> tuple:
    head = sock.recv(4, socket.MSG_WAITALL)
    return parse_reply(sock.recv(int.from_bytes(head, "big"), socket.MSG_WAITALL))


def test_hostile_bytes_on_the_stream_socket_end_that_connection_only(tmp_path):
    srv = ServerProcess(tmp_path).start()
    path = str(tmp_path / "space.sock.stream")
    try:
        with connect(srv.ipc) as good:
            garbage = _raw(path)
            garbage.sendall(frame_header(b"\xc1not msgpack") + b"\xc1not msgpack")
            seq, status, body = _reply(garbage)
            assert (seq, status) == (0, ERROR), body
            huge = _raw(path)
            huge.sendall((1 << 31).to_bytes(4, "big") + b"x" * 100)  # a length no request of ours has
            assert huge.recv(10) == b"", "the server hangs up"
            half = _raw(path)
            half.sendall(frame_header(b"y" * 1000) + b"y" * 10)
            half.close()  # gone mid-frame
            request = msgpack.packb([1, "ping", b"s" * 16, 1, 1, {}])
            garbage.sendall(frame_header(request) + request)
            assert _reply(garbage)[0] == 1, "still answered on a connection that sent garbage once"
            good.write(("still", "serving"))
            assert good.read(("still", None)) == ("still", "serving")
    finally:
        assert srv.stop() == 0, srv.read_log()


def test_a_send_to_a_server_that_reads_nothing_gives_up_and_hangs_up(tmp_path, monkeypatch):
    """A stopped server (SIGSTOP) fills the socket's buffer: the client cuts the connection rather than hang (its
    retry then moves on, as from a silent zmq peer)."""
    monkeypatch.setattr(unixconn_module, "SEND_STALL", 0.3)
    path = str(tmp_path / "s.sock.stream")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    conn = UnixConnection()
    conn.connect(f"ipc://{tmp_path}/s.sock")
    peer, _ = listener.accept()
    try:
        started = time.monotonic()
        conn.send(b"z" * (8 << 20))
        assert time.monotonic() - started < 3
        assert conn.sock is None, "hung up"
        assert conn.poll(50) == 0
    finally:
        peer.close()
        listener.close()
        conn.close()


@pytest.mark.parametrize("size", [10, 70_000, 3 << 20])
def test_frames_of_any_size_arrive_whole(tmp_path, size):
    srv = ServerProcess(tmp_path).start()
    try:
        with connect(srv.ipc) as c:
            c.write(("big", "x" * size))
            assert c.read(("big", None))[1] == "x" * size
            assert len(c.read_all(("big", None))) == 1
    finally:
        assert srv.stop() == 0, srv.read_log()


def test_a_local_client_that_reads_nothing_is_cut_off_and_resumes_after(tmp_path):
    """Events for a notify client that reads nothing (a stopped plug) once grew the server's buffer without bound
    (zmq's high-water mark bounded it before): past MAX_UNSENT the server cuts the connection, and the client,
    reading again, reconnects and resubscribes from the last event it saw (or learns it lost some)."""
    from onitu.space import EventsLost

    srv = ServerProcess(tmp_path).start()
    blob = "x" * (1 << 20)
    try:
        with connect(srv.ipc) as reader, connect(srv.ipc) as writer:
            events = reader.notify("write", ("big", None, None))
            for i in range(160):  # 160 MiB of events for the reader; each tuple taken at once
                writer.write(("big", i, blob))
                writer.take(("big", i, None))
            status = Path(f"/proc/{srv.proc.pid}/status").read_text()
            rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            assert rss < 200 * 1024, f"{rss} KiB: the server kept what the reader did not read"
            seen, lost = [], False
            try:
                while len(seen) < 160:
                    seen.append(events.next(10).tuple[1])
            except EventsLost:  # the history (32 MiB) no longer holds where it stood: it reads again, as told
                lost = True
            assert seen == list(range(len(seen))), "in order, from the start, no gap"
            assert lost or len(seen) == 160
            again = reader.notify("write", ("big", None, None))
            writer.write(("big", 999, "small"))
            assert again.next(10).tuple[1] == 999, "the cut client works on"
            assert "connection is cut" in srv.read_log()
    finally:
        assert srv.stop() == 0, srv.read_log()
