"""Issue 12's attacks on the space, each with the real bad input: backtracking regexes, non-finite numbers,
revoked and refused keys, clients that hoard, big answers and floods of junk frames."""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from onitu.space import Unavailable, connect
from onitu.space.errors import (
    HandshakeRefused,
    InvalidTuple,
    KeyRevoked,
    LimitExceeded,
    RegexTooSlow,
    RequestExpired,
    SpaceError,
)
from onitu.space.protocol import ERROR, OK, VERSION, parse_reply
from tests.helpers import ServerProcess
from tests.space.test_server import Raw

EVIL = "a" * 30 + "b"


@pytest.fixture
def srv(tmp_path):
    data = tmp_path / "space"
    data.mkdir()
    server = ServerProcess(data).start()
    yield server
    assert server.stop() == 0, server.read_log()


def write_latencies(endpoint: str, seconds: float, out: list[float], errors: list[BaseException]) -> None:
    try:
        with connect(endpoint, connect_timeout=10) as space:
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                start = time.monotonic()
                space.write(["innocent", i])
                out.append(time.monotonic() - start)
                i += 1
                time.sleep(0.005)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


# ---- 1. regexes ------------------------------------------------------------------------------------------------

def quiet_max(endpoint: str) -> float:
    """The worst write latency with no attacker: what this (shared, loaded) machine adds by itself."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    write_latencies(endpoint, 2.0, latencies, errors)
    assert not errors, errors
    return max(latencies)


def test_a_backtracking_regex_delays_no_one_and_gets_a_clear_error(srv):
    with connect(srv.ipc, connect_timeout=10) as evil:
        evil.write(["s", EVIL])
        noise = quiet_max(srv.ipc)
        latencies: list[float] = []
        errors: list[BaseException] = []
        innocent = threading.Thread(target=write_latencies, args=(srv.ipc, 3.0, latencies, errors))
        innocent.start()
        time.sleep(0.3)
        outcomes = []
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            # RE2 runs this one in linear time: no match, at once
            with pytest.raises(RequestExpired):
                evil.take(["s", re.compile(r"(a+)+$")], timeout=0)
            # lookahead: only Python's re can run it, in a worker, within the bound
            started = time.monotonic()
            try:
                evil.take(["s", re.compile(r"(?=a)(a+)+$")], timeout=0)
            except RegexTooSlow as exc:
                outcomes.append((time.monotonic() - started, str(exc)))
        innocent.join()
        assert not errors, errors
        assert outcomes and all(took < 1.0 for took, _ in outcomes), outcomes[:3]
        assert "(?=a)(a+)+$" in outcomes[0][1] and "did not finish" in outcomes[0][1]
        # One scheduler hiccup is allowed (CI runs three test processes on two cores, and killing and spawning a
        # regex worker costs CPU the quiet window did not see); a space that waited on a regex would show many
        # delays of the whole budget or far more (73 s before the bound).
        worst = sorted(latencies)
        assert len(worst) > 50 and worst[-2] < 0.05 + noise and worst[-1] < 0.25 + noise, (noise, worst[-5:])
        assert evil.read_all(["s", None]) == [("s", EVIL)]  # nothing was taken by mistake
        # a Python-only regex that is quick still works, blocked or not
        assert evil.read(["s", re.compile(r"(?<=a)b$")], timeout=0) == ("s", EVIL)
        found: list = []
        failed: list[SpaceError] = []

        def wait() -> None:
            try:
                found.append(evil.take(["t", re.compile(r"(\w)\1")], timeout=5))
            except SpaceError as exc:  # said in the failure (seen once in a loaded suite: found was empty)
                failed.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        evil.write(["t", "xyzz"])
        waiter.join()
        assert found == [("t", "xyzz")], failed


def test_a_blocked_take_whose_regex_runs_away_is_ended_with_the_error(srv):
    with connect(srv.ipc) as waiter, connect(srv.ipc) as writer:
        result: list[BaseException] = []

        def wait() -> None:
            try:
                waiter.take(["w", re.compile(r"(?=a)(a+)+$")], timeout=30)
            except RegexTooSlow as exc:
                result.append(exc)

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.5)
        started = time.monotonic()
        writer.write(["w", EVIL])  # matching it against the waiter runs away: the waiter ends, the write stays
        assert time.monotonic() - started < 0.5
        thread.join(5)
        assert result and isinstance(result[0], RegexTooSlow)
        assert writer.read_all(["w", None]) == [("w", EVIL)]


# ---- 2. numbers ------------------------------------------------------------------------------------------------

BAD_NUMBERS = [math.nan, math.inf, -math.inf, -1, 1e300]


def raw_frame(op: str, sid: bytes, seq: int, args: dict) -> bytes:
    return msgpack.packb([VERSION, op, sid, seq, 0, args])


@pytest.mark.parametrize("op,args,name", [
    ("take", {"p": ["never"], "timeout": "X"}, "timeout"),
    ("read", {"p": ["never"], "timeout": "X"}, "timeout"),
    ("write", {"t": ["w"], "lease": "X"}, "lease"),
    ("renew", {"id": 1, "lease": "X"}, "lease"),
    ("notify", {"events": ["write"], "p": ["n"], "lease": "X"}, "lease"),
    ("batch", {"ops": [["write", ["b"], "X"]]}, "lease"),
    ("hello", {"ttl": "X"}, "ttl"),
    ("read_all", {"p": ["r"], "limit": "X"}, "limit"),
    ("notify", {"events": ["write"], "p": ["n"], "since": "X"}, "since"),
    ("cancel", {"id": "X"}, "id"),
])
def test_non_finite_and_out_of_range_numbers_are_refused(srv, op, args, name):
    raw = Raw(srv.ipc)
    try:
        assert raw.call("hello", {"ttl": 60})[1] == OK
        for bad in [*BAD_NUMBERS, 2**64 - 1]:
            if name in ("limit", "since", "id") and bad in (-math.inf,):
                continue
            value = json.loads(json.dumps(args).replace('"X"', "0"))
            target = value["ops"][0] if op == "batch" else value
            if op == "batch":
                target[2] = bad
            else:
                target[name] = bad
            raw.seq += 1
            _, status, body = raw.send(raw_frame(op, raw.sid, raw.seq, value))
            assert status == ERROR and body[0] == "invalid" and name in body[1], (op, bad, body)
    finally:
        raw.close()


def test_a_nan_timeout_leaves_every_timer_on_time(srv):
    raw = Raw(srv.ipc)
    try:
        assert raw.call("hello", {"ttl": 60})[1] == OK
        # the raw frame, byte for byte as an attacker would send it
        reply = raw.send(raw_frame("take", raw.sid, 2, {"p": ["never"], "timeout": math.nan}))
        assert reply[1] == ERROR and "timeout" in reply[2][1]
        raw.seq = 2
        assert raw.call("write", {"t": ["leased"], "lease": 1.0})[1] == OK
        started = time.monotonic()
        assert raw.call("take", {"p": ["never"], "timeout": 1.0})[2][0] == "expired"
        assert 0.9 < time.monotonic() - started < 1.3
        time.sleep(0.2)
        assert raw.call("read_all", {"p": ["leased"]})[2] == []
        assert raw.call("stats", {})[2]["waiting"] == 0
    finally:
        raw.close()


def test_sequence_numbers_past_sqlite_integers_are_refused_not_fatal(srv):
    raw = Raw(srv.ipc)
    try:
        assert raw.call("hello", {"ttl": 60})[1] == OK
        for seq in (2**63, 2**64 - 1):
            reply = raw.send(raw_frame("write", raw.sid, seq, {"t": ["big seq"]}))
            assert reply[1] == ERROR and reply[2][0] == "protocol" and "seq" in reply[2][1]
            reply = raw.send(msgpack.packb([VERSION, "write", raw.sid, 5, seq, {"t": ["big ack"]}]))
            assert reply[1] == ERROR and "ack" in reply[2][1]
        assert raw.call("write", {"t": ["still", "up"]})[1] == OK
    finally:
        raw.close()
    assert srv.proc.poll() is None, srv.read_log()


def test_the_in_process_space_refuses_them_too():
    from onitu.space import TupleSpace

    with TupleSpace() as space:
        for bad in BAD_NUMBERS:
            with pytest.raises(InvalidTuple):
                space.take(["x"], timeout=bad)
            with pytest.raises(InvalidTuple):
                space.write(["x"], lease=bad)


# ---- 3. revoked keys -------------------------------------------------------------------------------------------

def curve_server(tmp_path: Path, *args: str) -> ServerProcess:
    data = tmp_path / "space"
    data.mkdir()
    return ServerProcess(data, *args, insecure=False).start()


def onitu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onitu.cli", *args], check=True, capture_output=True, text=True)


def test_a_revoked_key_stops_working_within_a_second_on_open_connections(tmp_path):
    srv = curve_server(tmp_path)
    try:
        onitu("keys", "new", "friend", "--data", str(srv.data))
        key = srv.data / "keys" / "friend.key_secret"
        with connect(srv.tcp_endpoint, data_dir=srv.data, client_key=key) as friend, \
                connect(srv.ipc) as local:
            friend.write(["mine"], lease="session")
            for i in range(20):
                friend.write(["pair", i])
                assert friend.take(["pair", None], timeout=0) == ("pair", i)
            onitu("keys", "revoke", "friend", "--data", str(srv.data))
            revoked_at = time.monotonic()
            with pytest.raises(KeyRevoked) as refused:
                while time.monotonic() - revoked_at < 5:
                    friend.write(["pair", "after"])
                    friend.take(["pair", None], timeout=0)
            assert time.monotonic() - revoked_at < 1.0
            assert "friend" in str(refused.value)
            # its session ended with its revocation: the session-leased tuple is gone, and nothing got through
            deadline = time.monotonic() + 1
            while local.read_all(["mine"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert local.read_all(["mine"]) == []
            assert local.stats()["revoked_requests"] >= 1
    finally:
        assert srv.stop() == 0, srv.read_log()


# ---- 4. refused handshakes -------------------------------------------------------------------------------------

def test_a_refused_client_is_told_at_once_and_the_server_counts_it(tmp_path):
    srv = curve_server(tmp_path)
    try:
        stranger = tmp_path / "stranger"
        onitu("keys", "new", "stranger", "--data", str(stranger), "--no-allow")
        key = stranger / "keys" / "stranger.key_secret"
        cases = {
            "unknown key": dict(data_dir=srv.data, client_key=key),
            "no CURVE": dict(insecure=True),
            "wrong server key": dict(data_dir=srv.data, server_key=zmq.curve_keypair()[0]),
        }
        for case, options in cases.items():
            started = time.monotonic()
            with pytest.raises(HandshakeRefused) as refused:
                connect(srv.tcp_endpoint, connect_timeout=10, **options)
            assert time.monotonic() - started < 2.0, case  # not the full connect timeout
            assert isinstance(refused.value, Unavailable)
            assert srv.tcp_endpoint in str(refused.value), case
        with pytest.raises(HandshakeRefused, match="onitu keys allow"):
            connect(srv.tcp_endpoint, connect_timeout=10, **cases["unknown key"])
        with connect(srv.ipc) as local:
            assert local.stats()["handshakes_refused"] >= 3
        listing = onitu("keys", "list", "--data", str(stranger), "--json").stdout
        fingerprint = json.loads(listing)[0]["fingerprint"]
        time.sleep(0.2)
        log = srv.read_log()
        assert fingerprint in log and "refused CURVE key" in log
        assert log.count(fingerprint) <= 2  # one line, not one per retry
    finally:
        assert srv.stop() == 0, srv.read_log()


# ---- 5. limits, big answers, junk ------------------------------------------------------------------------------

def test_limits_per_client_key(tmp_path):
    data = tmp_path / "space"
    (data / "keys").mkdir(parents=True)
    (data / "keys" / "limits.json").write_text(json.dumps(
        {"friend": {"tuples": 5, "bytes": 10_000, "sessions": 2, "blocked": 1}}))
    srv = ServerProcess(data, insecure=False).start()
    try:
        onitu("keys", "new", "friend", "--data", str(data))
        key = data / "keys" / "friend.key_secret"
        with connect(srv.tcp_endpoint, data_dir=data, client_key=key) as friend:
            for i in range(5):
                friend.write(["t", i])
            with pytest.raises(LimitExceeded) as over:
                friend.write(["t", 5])
            assert "friend" in str(over.value) and "5 live tuples" not in str(over.value)
            assert "tuples" in str(over.value)
            friend.take(["t", 0])
            friend.write(["t", 5])  # room again once one was taken
            friend.take(["t", 1])
            with pytest.raises(LimitExceeded, match="bytes"):
                friend.write(["big", "x" * 20_000])
            expired: list[BaseException] = []

            def wait() -> None:
                try:
                    friend.take(["never"], timeout=2)
                except RequestExpired as exc:
                    expired.append(exc)

            blocked = threading.Thread(target=wait)
            blocked.start()
            time.sleep(0.3)
            with pytest.raises(LimitExceeded, match="blocked"):
                friend.take(["never"], timeout=1)
            blocked.join()
            assert expired
            with connect(srv.tcp_endpoint, data_dir=data, client_key=key), \
                    pytest.raises(LimitExceeded, match="sessions"):
                connect(srv.tcp_endpoint, data_dir=data, client_key=key)
        with connect(srv.ipc) as local:  # other clients are not held to friend's limits
            local.batch([("write", ["local", i]) for i in range(50)])
            assert local.stats()["by_key"]
    finally:
        assert srv.stop() == 0, srv.read_log()


def test_a_big_read_all_does_not_stall_other_clients(srv):
    with connect(srv.ipc, connect_timeout=30) as big:
        blob = b"x" * (1 << 20)
        for start in range(0, 200, 10):
            big.batch([("write", ["blob", i, blob]) for i in range(start, start + 10)])
        noise = quiet_max(srv.ipc)
        latencies: list[float] = []
        errors: list[BaseException] = []
        innocent = threading.Thread(target=write_latencies, args=(srv.ipc, 4.0, latencies, errors))
        innocent.start()
        time.sleep(0.5)
        for _ in range(3):
            found = big.read_all(["blob", None, None])
            assert len(found) == 200 and [t[1] for t in found] == list(range(200))
        innocent.join()
        assert not errors, errors
        assert max(latencies) < 0.25 + noise, (noise, sorted(latencies)[-5:])


def test_junk_frames_are_logged_quietly_and_oversize_ones_counted(srv):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(srv.ipc)
    try:
        for i in range(2000):
            sock.send(b"\xc1junk" + i.to_bytes(4, "big"))
        for _ in range(2000):
            assert sock.poll(5000)
            assert parse_reply(sock.recv())[1] == ERROR
        sock.send(b"\x90" * (16 * 1024 * 1024 + 1))  # over --max-frame, under the transport's cap
        assert sock.poll(10_000) and "limit" in parse_reply(sock.recv())[2][1]
    finally:
        sock.close()
        ctx.term()
    with connect(srv.ipc) as space:
        stats = space.stats()
        assert stats["malformed"] >= 2001 and stats["oversize"] == 1
        with pytest.raises(InvalidTuple, match="over the"):  # the client says so rather than lose it
            space.write(["huge", b"x" * (65 * 1024 * 1024)])
    assert srv.read_log().count("malformed request") <= 3



def zmtp_dealer(endpoint: str) -> socket.socket:
    """A DEALER written by hand over TCP (ZMTP 3.0, NULL mechanism), as any program can speak it."""
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + bytes(32))
    assert recv_exactly(sock, 64)[0] == 0xFF
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    sock.sendall(bytes([0x04, len(ready)]) + ready)
    flags, size = recv_exactly(sock, 2)
    assert flags == 0x04 and b"READY" in recv_exactly(sock, size)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        assert more, "the server closed the connection"
        data += more
    return data


def test_a_frame_over_the_transport_cap_is_counted_and_logged_with_its_peer(srv):
    """Item 5: libzmq drops a frame over ZMQ_MAXMSGSIZE (4 x --max-frame: 64 MiB) and the connection with it,
    telling no one: the server counted nothing. Now it is counted and logged, naming the peer; clients that
    come and go are not counted, and a client beside it keeps working."""
    cap = 4 * 16 * 1024 * 1024
    with connect(srv.ipc) as space:
        for _ in range(5):  # clients that leave in the ordinary way
            with connect(srv.tcp_endpoint, insecure=True):
                pass
        peers = []
        for _ in range(3):
            before = space.stats()["connections"]
            raw = zmtp_dealer(srv.tcp_endpoint)
            deadline = time.monotonic() + 5  # until the server holds it (one sent at once may go unseen)
            while space.stats()["connections"] == before and time.monotonic() < deadline:
                time.sleep(0.02)
            host, port = raw.getsockname()[:2]
            peers.append(f"{host}:{port}")
            space.write(["innocent", len(peers)])
            with pytest.raises(OSError):  # reset by the server, long before the whole frame is sent
                raw.sendall(b"\x02" + struct.pack(">Q", cap + 1) + bytes(cap + 1))
                recv_exactly(raw, 1)
            raw.close()
            assert space.take(["innocent", None], timeout=0) == ("innocent", len(peers))
        deadline = time.monotonic() + 5
        while space.stats()["frames_over_cap"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert space.stats()["frames_over_cap"] == 3
    log = srv.read_log()
    assert f"dropped the connection of {peers[0]}: it sent a frame over the {cap}-byte limit" in log, log
    assert log.count("dropped the connection of") == 1  # quiet: one line, the others counted


def test_a_stream_of_answers_to_other_requests_does_not_hold_a_call_past_its_limit():
    """A server that never answers this request but keeps sending frames for other sequence numbers (late answers,
    or a hostile peer): the call still ends when its limit is past, with the usual error."""
    from onitu.space.client import SpaceClient
    from onitu.space.protocol import parse_request, reply

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve() -> None:
        peers = []
        while not stop.is_set():
            if router.poll(2):
                ident, frame = router.recv_multipart()
                op, _, seq, _, _ = parse_request(frame)
                if op in ("hello", "ping"):
                    router.send_multipart([ident, reply(seq, {"boot": "fake", "event_id": 0, "epoch": 0})])
                else:
                    peers.append((ident, seq))
            for ident, seq in peers:  # never this one's answer: another's, every 2 ms
                router.send_multipart([ident, reply(seq + 1000, None)])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = SpaceClient([f"tcp://127.0.0.1:{port}"], connect_timeout=1.0)
    try:
        start = time.monotonic()
        with pytest.raises(Unavailable, match="no answer from the space"):
            client.read_all(("x", None))
        assert time.monotonic() - start < 5
    finally:
        client.close()
        stop.set()
        thread.join(5)
        router.close()
        ctx.term()
