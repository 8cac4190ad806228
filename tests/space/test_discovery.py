"""Discovery: a UDP lookup finds the space's endpoints and key; junk datagrams are ignored and counted."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import msgpack
import pytest

from onitu.space import Unavailable, connect
from onitu.space.ring import lookup
from tests.helpers import ServerProcess


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def discoverable(tmp_path):
    port = free_udp_port()
    data = tmp_path / "space"
    data.mkdir()
    srv = ServerProcess(data, insecure=False)
    srv.args = ("--discovery", "--discovery-port", str(port))
    srv.start()
    yield srv, port
    srv.stop()


def test_lookup_and_connect_without_an_endpoint(discoverable, tmp_path, monkeypatch):
    srv, port = discoverable
    answer = lookup(port, timeout=3)
    assert srv.tcp_endpoint in answer["endpoints"]
    assert answer["public_key"] == srv.info["public_key"]
    monkeypatch.delenv("ONITU_SPACE", raising=False)
    empty = tmp_path / "elsewhere"  # no space.json here: connect must discover; keys come from the server's dir
    empty.mkdir()
    (empty / "keys").symlink_to(srv.data / "keys")
    with connect(data_dir=empty, discovery_port=port) as space:
        space.write(["found", 1])
        assert space.read_all(["found", None]) == [("found", 1)]


def test_junk_datagrams_are_ignored_and_counted(discoverable):
    srv, port = discoverable
    junk = [b"", b"\xc1", b"x" * 5000, msgpack.packb({"onitu": "lookup", "v": 99}), msgpack.packb([1, 2, 3]),
            msgpack.packb({"onitu": "space", "endpoints": ["tcp://evil:1"]})]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        for datagram in junk:
            sock.sendto(datagram, ("127.0.0.1", port))
            with pytest.raises(TimeoutError):
                sock.recvfrom(65536)
    assert lookup(port, timeout=3)["endpoints"]  # still answering
    with connect(srv.ipc) as space:
        stats = space.stats()
    assert stats["discovery_malformed"] == len(junk)


def test_nobody_answering_is_a_clear_error():
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="discovery"):
        lookup(free_udp_port(), timeout=0.3)
    assert time.monotonic() - t0 < 1


def test_cli_without_endpoint_reports_how_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("ONITU_DATA", str(tmp_path))
    monkeypatch.delenv("ONITU_SPACE", raising=False)
    # An Onitu running on this host (another test's, or the user's) would rightly answer a lookup on loopback:
    # ask only a documentation address (RFC 5737) where nothing answers.
    monkeypatch.setenv("ONITU_DISCOVERY_HOSTS", "192.0.2.1")
    out = subprocess.run([sys.executable, "-m", "onitu.cli", "space", "ls"], capture_output=True, text=True,
                         timeout=30, env={**__import__("os").environ})
    assert out.returncode == 1 and "discovery" in out.stderr
