"""The chunk server make and the sync hub share (onitu.chunks): secret, framing, refusals, and a server that keeps
serving whatever a peer sends."""

from __future__ import annotations

import msgpack
import pytest
import zmq

from onitu.chunks import ChunkServer, TransferError


class Refusal(Exception):
    pass


def answer(peer: bytes, args: list) -> object:
    if args == ["boom"]:
        raise Refusal("refused on purpose")
    if args == ["crash"]:
        raise TransferError("no such blob")
    return {"echo": args, "peer": len(peer) > 0}


@pytest.fixture
def server():
    srv = ChunkServer(answer, "test-chunks", refused=(Refusal,))
    yield srv
    srv.close()


@pytest.fixture
def peer(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.curve_serverkey = server.key.encode()
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.linger = 0
    sock.connect(server.endpoint)
    yield sock
    sock.close(0)


def ask(sock: zmq.Socket, *frames: bytes) -> list:
    sock.send_multipart(list(frames))
    assert sock.poll(5000), "no answer"
    return msgpack.unpackb(sock.recv(), raw=False)


def test_requests_are_answered_with_their_id(server, peer):
    assert ask(peer, msgpack.packb([server.secret, 7, "a", 1])) == [7, True, {"echo": ["a", 1], "peer": True}]


def test_refusals_are_answers(server, peer):
    assert ask(peer, msgpack.packb([server.secret, 1, "boom"])) == [1, False, "refused on purpose"]
    assert ask(peer, msgpack.packb([server.secret, 2, "crash"])) == [2, False, "no such blob"]
    assert ask(peer, msgpack.packb(["guess", 3, "a"])) == [3, False, "wrong secret"]
    assert ask(peer, msgpack.packb([server.secret])) == [None, False, "not a request"]
    assert ask(peer, b"\xc1")[:2] == [None, False]


def test_garbage_does_not_stop_the_server(server, peer):
    peer.send_multipart([b"one", b"two"])  # not one frame: dropped, unanswered
    assert ask(peer, msgpack.packb({"not": "a list"}))[1] is False
    assert ask(peer, msgpack.packb([server.secret, 9]))[:2] == [9, True]
