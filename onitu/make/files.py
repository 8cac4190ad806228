"""Moving build files between the coordinator's host and workers on other hosts, by content (sha256).

The coordinator runs a :class:`FileServer` (a :class:`onitu.chunks.ChunkServer`: CURVE-encrypted with an ephemeral
key published in the build tuple, requests carrying the build's secret, which only clients of the space can read). A
remote worker asks for the sha256 and mode of the inputs it needs, fetches only the blobs missing from its
:class:`BlobStore`, and uploads the files its recipe produced; the coordinator then places them in the build
directory. File contents never go through the space.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import msgpack
import zmq

from onitu.chunks import ChunkServer, TransferError
from onitu.space.auth import ephemeral_client

CHUNK = 1 << 20
SHA_LEN = 64


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def is_sha(value: Any) -> bool:
    return isinstance(value, str) and len(value) == SHA_LEN and all(c in "0123456789abcdef" for c in value)


def relative(path: str) -> str:
    """A build-relative path, refused if it could leave the build directory."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\0" in path or not p.parts:
        raise TransferError(f"refusing path {path!r}: not inside the build directory")
    return str(p)


def place(src: Path, dst: Path, mode: int) -> None:
    """Copy ``src`` to ``dst`` through a temporary name and rename, so readers never see half a file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.onitu-tmp-{secrets.token_hex(4)}")
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, stat.S_IMODE(mode))
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class BlobStore:
    """Files named by their sha256 under one directory; a blob is only visible once its content is verified."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).exists()

    def add_file(self, src: Path) -> str:
        """Store a copy of ``src``; return its sha256."""
        sha = sha256_file(src)
        if not self.has(sha):
            tmp = self.root / "tmp" / secrets.token_hex(8)
            shutil.copyfile(src, tmp)
            self._commit(tmp, sha)
        return sha

    def writer(self, sha: str) -> _BlobWriter:
        return _BlobWriter(self, sha)

    def _commit(self, tmp: Path, sha: str) -> None:
        dst = self.path(sha)
        dst.parent.mkdir(exist_ok=True)
        os.replace(tmp, dst)


class _BlobWriter:
    """Receives one blob in order; :meth:`finish` verifies the hash before the blob becomes visible."""

    def __init__(self, store: BlobStore, sha: str) -> None:
        self.store, self.sha = store, sha
        self.tmp = store.root / "tmp" / f"{sha}.{secrets.token_hex(4)}"
        self.file = open(self.tmp, "wb")  # noqa: SIM115 -- closed by finish/abort
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, offset: int, data: bytes) -> None:
        if offset != self.size:
            raise TransferError(f"blob {self.sha[:12]}: chunk at {offset}, expected {self.size}")
        self.file.write(data)
        self.hash.update(data)
        self.size += len(data)

    def finish(self) -> None:
        self.file.close()
        if self.hash.hexdigest() != self.sha:
            self.abort()
            raise TransferError(f"blob {self.sha[:12]}: content does not match its sha256")
        self.store._commit(self.tmp, self.sha)

    def abort(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class FileServer:
    """The coordinator's side: serves the build directory's files by path and sha, and takes produced blobs."""

    def __init__(self, build_dir: Path, store: BlobStore, bind: str) -> None:
        self.build_dir, self.store = build_dir, store
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256
        self._uploads: dict[tuple[bytes, str], _BlobWriter] = {}
        self.sent = [0, 0]      # blobs started to remote workers, bytes sent
        self.received = [0, 0]  # blobs received from them, bytes
        self.server = ChunkServer(lambda peer, req: self._handle(peer, req[0] if req else None, req[1:]),
                                  "onitu-make-files", refused=(OSError,), bind=bind, log_level=logging.WARNING)
        self.secret, self.endpoint, self.public = self.server.secret, self.server.endpoint, self.server.key.encode()

    def close(self) -> None:
        self.server.close()
        for writer in self._uploads.values():
            writer.abort()

    def _handle(self, peer: bytes, op: Any, args: list) -> Any:
        if op == "meta" and len(args) == 1 and isinstance(args[0], list):
            return [self._meta(p) for p in args[0]]
        if op == "get" and len(args) == 2 and is_sha(args[0]) and isinstance(args[1], int):
            return self._get(args[0], args[1])
        if op == "has" and len(args) == 1 and isinstance(args[0], list):
            return [is_sha(s) and self.store.has(s) for s in args[0]]
        if op == "put" and len(args) == 3 and is_sha(args[0]) and isinstance(args[2], bytes | None):
            return self._put(peer, args[0], args[1], args[2])
        raise TransferError(f"unknown request {op!r:.40}")

    def _meta(self, path: Any) -> list | None:
        """[sha256, mode, size] of a build file, or None if it does not exist; hashes are cached by mtime."""
        if not isinstance(path, str):
            raise TransferError("a path must be a string")
        full = self.build_dir / relative(path)
        try:
            st = full.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        key = (path, st.st_size, st.st_mtime_ns)
        sha = self._hashes.get(key)
        if sha is None:
            sha = self._hashes[key] = self.store.add_file(full)
        return [sha, stat.S_IMODE(st.st_mode), st.st_size]

    def _get(self, sha: str, offset: int) -> bytes:
        try:
            with open(self.store.path(sha), "rb") as f:
                f.seek(offset)
                data = f.read(CHUNK)
        except FileNotFoundError:
            raise TransferError(f"no blob {sha[:12]} here") from None
        self.sent[0] += offset == 0
        self.sent[1] += len(data)
        return data

    def _put(self, peer: bytes, sha: str, offset: Any, data: bytes | None) -> bool:
        key = (peer, sha)
        if data is None:  # end of this blob (an empty file sends only this)
            writer = self._uploads.pop(key, None) or self.store.writer(sha)
            writer.finish()
            self.received[0] += 1
            self.received[1] += writer.size
            return True
        if not isinstance(offset, int):
            raise TransferError("bad offset")
        writer = self._uploads.get(key)
        if writer is None:
            writer = self._uploads[key] = self.store.writer(sha)
        try:
            writer.write(offset, data)
        except TransferError:
            self._uploads.pop(key).abort()
            raise
        return True


class FileClient:
    """The remote worker's side of :class:`FileServer` (one per build and thread)."""

    def __init__(self, endpoint: str, server_key: str, secret: str, timeout: float = 30.0) -> None:
        self.secret, self.timeout = secret, timeout
        self.ctx = zmq.Context.instance()
        self.sock = ephemeral_client(self.ctx, endpoint, server_key)
        self.endpoint = endpoint
        self._rid = 0

    def close(self) -> None:
        self.sock.close(0)

    def call(self, op: str, *args: Any) -> Any:
        self._rid += 1
        self.sock.send(msgpack.packb([self.secret, self._rid, op, *args]))
        while True:  # replies to requests that timed out earlier are skipped
            if not self.sock.poll(int(self.timeout * 1000)):
                raise TransferError(f"no answer from the coordinator's file server at {self.endpoint}")
            rid, ok, body = msgpack.unpackb(self.sock.recv(), raw=False)
            if rid == self._rid:
                break
        if not ok:
            raise TransferError(f"coordinator's file server: {body}")
        return body

    def fetch(self, sha: str, store: BlobStore) -> None:
        writer = store.writer(sha)
        try:
            while True:
                data = self.call("get", sha, writer.size)
                if not data:
                    break
                writer.write(writer.size, data)
            writer.finish()
        except BaseException:
            writer.abort()
            raise

    def upload(self, path: Path, sha: str, progress: Callable[[int], None] | None = None) -> None:
        offset = 0
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                self.call("put", sha, offset, block)
                offset += len(block)
                if progress:
                    progress(offset)
        self.call("put", sha, offset, None)
