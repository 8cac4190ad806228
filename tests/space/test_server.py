"""The server facing hostile and retried input: raw frames over a real socket, then the CURVE gate."""

from __future__ import annotations

import os
import subprocess
import sys

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onitu.space import Unavailable, connect
from onitu.space.core import REMEMBERED
from onitu.space.protocol import ERROR, OK, VERSION, parse_reply, request
from tests.helpers import ServerProcess


class Raw:
    """A bare DEALER speaking frames to the server, so tests can send anything at all."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.sid = os.urandom(16)
        self.seq = 0

    def send(self, *frames: bytes, timeout_ms: int = 5000):
        self.sock.send_multipart(frames)
        assert self.sock.poll(timeout_ms), "server did not answer"
        return parse_reply(self.sock.recv())

    def call(self, op: str, args: dict, seq: int | None = None):
        if seq is None:
            self.seq += 1
            seq = self.seq
        return self.send(request(op, self.sid, seq, 0, args))

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data = tmp_path_factory.mktemp("hostile")
    srv = ServerProcess(data, "--max-frame", str(1 << 20)).start()
    raw = Raw(srv.ipc)
    assert raw.call("hello", {"ttl": 60})[1] == OK
    assert raw.call("write", {"t": ["keep", 1]})[1] == OK
    yield srv, raw
    raw.close()
    assert srv.stop() == 0, srv.read_log()


def alive_and_intact(raw: Raw) -> None:
    _seq, status, body = raw.call("read_all", {"p": ["keep", None]})
    assert status == OK and body == [["keep", 1]]


def error_code(reply) -> str:
    _, status, body = reply
    assert status == ERROR, reply
    return body[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes_get_an_error_reply(live, junk):
    _srv, raw = live
    reply = raw.send(junk)
    assert reply[1] == ERROR or junk == b""  # an empty frame is still answered with an error below
    alive_and_intact(raw)


message_parts = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8),
              st.binary(max_size=20)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
ops = st.sampled_from(["write", "take", "read", "read_all", "batch", "notify", "cancel", "renew", "bogus", "stats"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops, message_parts, st.dictionaries(st.sampled_from(["t", "p", "timeout", "lease", "ops", "id", "events",
                                                            "since", "limit"]), message_parts, max_size=4))
def test_well_framed_nonsense_is_refused_cleanly(live, op, junk, args):
    _srv, raw = live
    if op in ("take", "read"):
        args["timeout"] = 0  # never leave a blocked request behind
    if op in ("write", "batch"):
        args.pop("lease", None)
    for frame in (msgpack.packb([VERSION, op, raw.sid, 10_000_000, 0, args]),
                  msgpack.packb([VERSION, op, raw.sid, junk, 0, args]),
                  msgpack.packb([junk, op, raw.sid, 1, 0, args])):
        try:
            raw.send(frame)
        except AssertionError:
            pytest.fail(f"no answer to {frame!r}")
    raw.call("take", {"p": [None] * 9, "timeout": 0})
    _seq, status, body = raw.call("read_all", {"p": ["keep", None]})
    assert status == OK and ["keep", 1] in body


def test_truncated_frames(live):
    _srv, raw = live
    frame = request("write", raw.sid, 99, 0, {"t": ["truncated", "x" * 50]})
    for cut in range(1, len(frame), 7):
        assert error_code(raw.send(frame[:cut])) == "protocol"
    alive_and_intact(raw)
    assert raw.call("read_all", {"p": ["truncated", None]})[2] == []


def test_oversize_frame(live):
    _srv, raw = live
    reply = raw.send(request("write", raw.sid, 98, 0, {"t": ["big", b"x" * (1 << 20)]}))
    assert error_code(reply) == "protocol" and "limit" in reply[2][1]
    alive_and_intact(raw)


def test_wrong_version_unknown_op_and_extra_frames(live):
    _srv, raw = live
    reply = raw.send(msgpack.packb([VERSION + 1, "write", raw.sid, 1, 0, {"t": ["x"]}]))
    assert error_code(reply) == "protocol" and "version" in reply[2][1]
    reply = raw.call("explode", {})
    assert error_code(reply) == "protocol" and "unknown op" in reply[2][1]
    assert error_code(raw.send(b"a", b"b")) == "protocol"
    alive_and_intact(raw)


def test_unknown_session_must_say_hello(live):
    srv, _raw = live
    other = Raw(srv.ipc)
    try:
        assert error_code(other.call("write", {"t": ["x"]})) == "session_expired"
    finally:
        other.close()


def test_a_client_whose_session_ended_opens_it_again_and_its_request_goes_through(live, caplog):
    """A process starved or stuck past its session's TTL finds its session gone: the request the server refused
    (before running it) is sent again on a reopened session, instead of failing (the referee crashed on it, at a
    million files); the log says the session's leased tuples are gone, for whoever owned some."""
    srv, raw = live
    with connect(srv.ipc, session_ttl=60) as space:
        space.write(["mine", 1], lease="session")
        assert raw.send(request("bye", space.core.sid, 1, 0, {}))[1] == OK  # ended, as an expiry would
        caplog.set_level("WARNING", logger="onitu.space.client")
        assert space.read_all(["mine", None]) == []  # leased to the session that ended
        space.write(["mine", 2])
        assert space.read_all(["mine", None]) == [("mine", 2)]
        assert any("expired on the server; its session-leased tuples are gone; reopening" in r.getMessage()
                   for r in caplog.records)
        space.take(["mine", 2])


def test_a_subscription_asked_for_on_a_session_that_ended_opens_it_again(live):
    """A plug starved past its session's TTL re-subscribed to its orders and was refused (the session was gone):
    its order loop died, and the plug went on for minutes without taking an order, at a million files."""
    srv, raw = live
    with connect(srv.ipc, session_ttl=60) as space:
        assert raw.send(request("bye", space.core.sid, 1, 0, {}))[1] == OK  # ended, as an expiry would
        stream = space.notify("write", ["news", None])
        space.write(["news", 1])
        assert stream.next(5).tuple == ("news", 1)
        stream.close()


def test_malformed_frames_are_counted(live):
    _srv, raw = live
    before = raw.call("stats", {})[2].get("malformed", 0)  # a counter is there once it counted (the fixture is shared)
    raw.send(b"\xc1")
    assert raw.call("stats", {})[2]["malformed"] == before + 1


def test_retried_mutations_are_applied_once(live):
    _srv, raw = live
    first = raw.call("write", {"t": ["once", 1]}, seq=500)
    again = raw.call("write", {"t": ["once", 1]}, seq=500)
    assert first[1:] == again[1:]
    assert raw.call("read_all", {"p": ["once", None]})[2] == [["once", 1]]
    raw.call("write", {"t": ["once", 2]}, seq=501)
    took = raw.call("take", {"p": ["once", None], "timeout": 0}, seq=502)
    retried = raw.call("take", {"p": ["once", None], "timeout": 0}, seq=502)
    assert took[2] == retried[2] == ["once", 1]
    assert raw.call("read_all", {"p": ["once", None]})[2] == [["once", 2]]


def test_a_subscription_does_not_keep_the_replies_after_it_cached(live):
    """A hub's plugs and referee each hold a subscription open for their whole life; the replies of the mutations
    they send meanwhile are forgotten once they arrived, not cached (in memory, on disk, on the secondary) for as
    long as the subscription runs: gigabytes at a million files."""
    srv, _raw = live
    with connect(srv.ipc, session_ttl=60) as space:
        stream = space.notify("write", ["ticker", None])
        for i in range(200):
            space.batch([("write", ("ticker", i)), ("write", ("ticker-other", i))])
            space.take(("ticker-other", i))
        stats = space.stats()
        assert stats["cached_replies"] <= 5, stats["cached_replies"]
        assert stream.next(5).tuple == ("ticker", 0)
        stream.close()


def test_clients_hold_the_ack_back_for_exactly_the_replies_the_server_caches(live):
    """The client lets its acknowledgement pass every outstanding request but mutations (REMEMBERED): were the
    server to cache the reply of another op, a retry could find it forgotten; were it not to cache a mutation's, a
    retried take would take twice."""
    srv, _raw = live
    raw = Raw(srv.ipc)
    try:
        assert raw.call("hello", {"ttl": 60})[1] == OK
        eid = raw.call("write", {"t": ["acks", 0], "lease": 60})[2]
        calls = [("write", {"t": ["acks", 1]}), ("take", {"p": ["acks", 1], "timeout": 0}),
                 ("read", {"p": ["acks", 0], "timeout": 0}), ("read_all", {"p": ["acks", None]}),
                 ("batch", {"ops": [["read", ["acks", 0]]]}), ("renew", {"id": eid, "lease": 60}),
                 ("cancel", {"id": eid}), ("ping", {}), ("stats", {}),
                 ("notify", {"events": ["write"], "p": ["acks", None]}), ("unnotify", {"seq": 1}),
                 ("withdraw", {"seq": 1})]
        cached = {}
        for op, args in calls:  # this client never acknowledges: every reply the server caches stays
            before = raw.call("stats", {})[2]["cached_replies"]
            assert raw.call(op, args)[1] == OK, op
            cached[op] = raw.call("stats", {})[2]["cached_replies"] - before
        assert {op for op, n in cached.items() if n} == REMEMBERED & set(cached), cached
        assert set(cached) >= REMEMBERED
    finally:
        raw.call("bye", {})
        raw.close()


def test_unknown_curve_key_is_refused(tmp_path):
    data = tmp_path / "space"
    data.mkdir()
    srv = ServerProcess(data, insecure=False).start()
    try:
        with connect(srv.tcp_endpoint, data_dir=data) as client:  # the local client key is authorized
            client.write(["curve", 1])
        stranger = tmp_path / "stranger"
        subprocess.run([sys.executable, "-m", "onitu.cli", "keys", "new", "stranger", "--data", str(stranger),
                        "--no-allow"], check=True, capture_output=True)
        key = stranger / "keys" / "stranger.key_secret"
        with pytest.raises(Unavailable):
            connect(srv.tcp_endpoint, data_dir=data, client_key=key, connect_timeout=1.5)
        with pytest.raises(Unavailable):
            connect(srv.tcp_endpoint, insecure=True, connect_timeout=1.5)  # no CURVE at all
        subprocess.run([sys.executable, "-m", "onitu.cli", "keys", "allow", str(stranger / "keys" / "stranger.key"),
                        "--data", str(data)], check=True, capture_output=True)
        with connect(srv.tcp_endpoint, data_dir=data, client_key=key, connect_timeout=5) as client:
            assert client.read_all(["curve", None]) == [("curve", 1)]
        with connect(str(srv.tcp_endpoint), data_dir=str(data), client_key=str(key), connect_timeout=5) as client:
            assert client.read_all(["curve", None]) == [("curve", 1)]  # paths as a script gives them: text
    finally:
        srv.stop()


def test_plain_tcp_off_loopback_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "onitu.cli", "space", "serve", "--data", str(tmp_path),
                          "--listen", "tcp://0.0.0.0:0", "--insecure-loopback", "--no-discovery"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "loopback" in out.stderr
