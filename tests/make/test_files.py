"""The coordinator's file server and a remote worker's client: content-addressed, verified, confined to the build
directory."""

from __future__ import annotations

import hashlib
import os

import msgpack
import pytest
import zmq

from onitu.make.files import BlobStore, FileClient, FileServer, TransferError, place, relative


@pytest.fixture
def served(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    server = FileServer(build, BlobStore(tmp_path / "blobs"), "tcp://127.0.0.1:0")
    yield build, server
    server.close()


def client_of(server: FileServer, secret: str | None = None) -> FileClient:
    return FileClient(server.endpoint, server.public.decode(), secret or server.secret, timeout=5)


def test_fetch_by_hash_keeps_content_and_mode(served, tmp_path):
    build, server = served
    tool = build / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_bytes(os.urandom(3 * (1 << 20) + 17))  # several chunks
    tool.chmod(0o755)
    client = client_of(server)
    (meta,) = client.call("meta", ["bin/tool"])
    sha, mode, size = meta
    assert sha == hashlib.sha256(tool.read_bytes()).hexdigest() and mode == 0o755 and size == tool.stat().st_size
    cache = BlobStore(tmp_path / "cache")
    client.fetch(sha, cache)
    place(cache.path(sha), tmp_path / "staged" / "tool", mode)
    staged = tmp_path / "staged" / "tool"
    assert staged.read_bytes() == tool.read_bytes() and os.access(staged, os.X_OK)
    assert client.call("meta", ["no/such/file"]) == [None]
    client.close()


def test_upload_is_verified_before_it_is_visible(served, tmp_path):
    _, server = served
    client = client_of(server)
    out = tmp_path / "out.bin"
    out.write_bytes(b"x" * 5000)
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert client.call("has", [sha]) == [False]
    client.upload(out, sha)
    assert client.call("has", [sha]) == [True]
    assert server.store.path(sha).read_bytes() == out.read_bytes()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    client.upload(empty, hashlib.sha256(b"").hexdigest())
    liar = "0" * 64  # content that does not hash to the name it is sent under
    with pytest.raises(TransferError, match="does not match"):
        client.upload(out, liar)
    assert not server.store.has(liar)
    client.close()


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "a/../../b", "", "nul\0byte"])
def test_paths_outside_the_build_dir_are_refused(served, path):
    _, server = served
    client = client_of(server)
    with pytest.raises(TransferError):
        client.call("meta", [path])
    with pytest.raises(TransferError):
        relative(path)
    client.close()


def test_wrong_secret_and_garbage_are_refused_and_the_server_keeps_serving(served):
    build, server = served
    (build / "f").write_text("hello")
    with pytest.raises(TransferError, match="secret"):
        client_of(server, secret="guess").call("meta", ["f"])
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.curve_serverkey = server.public
    raw.curve_publickey, raw.curve_secretkey = zmq.curve_keypair()
    raw.connect(server.endpoint)
    junks = [b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([server.secret]),
             msgpack.packb([server.secret, 1, "get", "zz", 0])]
    for junk in junks:
        raw.send(junk)
        assert raw.poll(5000)
        assert msgpack.unpackb(raw.recv())[1] is False
    raw.close(0)
    assert client_of(server).call("meta", ["f"])[0][2] == 5
