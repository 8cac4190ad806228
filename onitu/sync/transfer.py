"""File contents from plug to plug, chunk by chunk, never through the space.

Every plug serves its replica's files on a ZeroMQ ROUTER socket, CURVE-encrypted with a key pair made at start and
published (with a secret every request must carry) in its session-leased plug tuple, which only clients of the
space can read. A request is ``[secret, request_id, path, offset, length]``; the answer ``[request_id, ok, data or
error]``. The fetching side keeps a few requests in flight so a transfer is not one round trip per chunk, and the
receiving driver checks the sha256 of the whole file before anything becomes visible.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import zmq

from onitu.space.auth import ephemeral_client, ephemeral_server
from onitu.sync.drivers.base import CHUNK, Driver, DriverError

log = logging.getLogger(__name__)

WINDOW = 4  # chunks in flight per transfer
TIMEOUT = 30.0  # seconds without an answer before a source is given up
CHECK = 1.0  # seconds without an answer between two checks that the source still runs


class TransferError(Exception):
    """A source could not be read (the message names the source and the path)."""


class ChunkServer:
    """Serves ranges of the files of ``driver`` whose paths ``allowed`` accepts, from a thread."""

    def __init__(self, driver: Driver, allowed: Callable[[str], bool], bind: str = "tcp://127.0.0.1:*") -> None:
        self.driver, self.allowed = driver, allowed
        self.secret = secrets.token_hex(16)
        self.ctx = zmq.Context()
        self.sock, self.key = ephemeral_server(self.ctx, bind)
        self.endpoint = self.sock.last_endpoint.decode()
        self.sent = 0  # bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="onitu-sync-chunks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the socket."""
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close(0)
        self.ctx.term()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(200):
                continue
            frames = self.sock.recv_multipart()
            if len(frames) != 2:
                continue
            peer, raw = frames
            rid: Any = None
            try:
                req = msgpack.unpackb(raw, raw=False)
                if not (isinstance(req, list) and len(req) == 5):
                    raise TransferError("not a chunk request")
                token, rid, path, offset, length = req
                if not isinstance(token, str) or not secrets.compare_digest(token, self.secret):
                    raise TransferError("wrong secret")
                if not (isinstance(path, str) and type(offset) is int and type(length) is int
                        and offset >= 0 and 0 < length <= CHUNK):
                    raise TransferError("malformed chunk request")
                if not self.allowed(path):
                    raise TransferError(f"{path!r:.80} is not in a synced folder")
                data = self.driver.read(path, offset, length)
                self.sent += len(data)
                reply = [rid, True, data]
            except (TransferError, DriverError, ValueError, TypeError, msgpack.UnpackException) as exc:
                log.debug("chunk server of %s: refused a request: %s", self.driver.service, exc)
                reply = [rid, False, str(exc)]
            self.sock.send_multipart([peer, msgpack.packb(reply)])


def fetch(source: dict[str, Any], service: str, path: str, offset: int = 0,
          progress: Callable[[int], None] | None = None, alive: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """The bytes of ``path`` on the plug described by ``source`` (its plug tuple's info), from ``offset`` to the end.

    Raises :class:`TransferError` if the source refuses, stays silent for :data:`TIMEOUT` seconds, or, while it is
    silent, ``alive`` says it is gone (a killed source is given up at once, not after the whole timeout).
    """
    sock = ephemeral_client(zmq.Context.instance(), str(source["endpoint"]), str(source["key"]))
    where = f"{service}: {path}"
    try:
        asked, next_rid = {}, 0
        wanted, done = offset, False
        while not done or asked:
            while not done and len(asked) < WINDOW:
                asked[next_rid] = wanted
                sock.send(msgpack.packb([source["secret"], next_rid, path, wanted, CHUNK]))
                next_rid, wanted = next_rid + 1, wanted + CHUNK
            silent = 0.0
            while not sock.poll(int(CHECK * 1000)):
                silent += CHECK
                if silent >= TIMEOUT:
                    raise TransferError(f"{where}: no answer from {source['endpoint']} for {TIMEOUT:.0f} s")
                if alive is not None and not alive():
                    raise TransferError(f"{where}: the source stopped (its plug is gone)")
            rid, ok, body = msgpack.unpackb(sock.recv(), raw=False)
            if rid not in asked:
                continue
            if not ok:
                raise TransferError(f"{where}: {body}")
            at = asked.pop(rid)
            if at != offset:  # answers come in order on one connection; anything else is a broken peer
                raise TransferError(f"{where}: chunk at {at} arrived while expecting {offset}")
            if len(body) < CHUNK:
                done = True
                asked.clear()
            if body:
                offset += len(body)
                if progress:
                    progress(len(body))
                yield body
    finally:
        sock.close(0)
