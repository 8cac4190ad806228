"""File contents from plug to plug, chunk by chunk, never through the space.

Every plug serves its replica's files on a ZeroMQ ROUTER socket, CURVE-encrypted with a key pair made at start and
published (with a secret every request must carry) in its session-leased plug tuple, which only clients of the
space can read. A request is ``[secret, request_id, path, offset, length]``; the answer ``[request_id, ok, data or
error]``. The fetching side keeps a few requests in flight so a transfer is not one round trip per chunk, and the
receiving driver checks the sha256 of the whole file before anything becomes visible.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import zmq

from onitu.space.auth import ephemeral_client, ephemeral_server
from onitu.sync.drivers.contract import CHUNK, Driver, DriverError

log = logging.getLogger(__name__)

WINDOW = 4  # chunks in flight per transfer
TIMEOUT = 30.0  # seconds without an answer before a source is given up
CHECK = 1.0  # seconds without an answer between two checks that the source still runs
KEPT = 8  # connections a thread keeps open


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


class _Connections(threading.local):
    """This thread's connections to chunk servers, reused from one file to the next (a CURVE handshake per small
    file would cost more than the file)."""

    def __init__(self) -> None:
        self.socks: dict[tuple[str, str], zmq.Socket] = {}

    def get(self, endpoint: str, key: str) -> zmq.Socket:
        sock = self.socks.pop((endpoint, key), None)
        if sock is None:
            sock = ephemeral_client(zmq.Context.instance(), endpoint, key)
        if len(self.socks) >= KEPT:  # servers of plugs that restarted since: forget the oldest
            self.socks.pop(next(iter(self.socks))).close(0)
        return sock

    def put(self, endpoint: str, key: str, sock: zmq.Socket) -> None:
        self.socks[endpoint, key] = sock


_connections = _Connections()
_request_ids = itertools.count()  # unique across a thread's transfers: a late answer is never taken for another's


def fetch(source: dict[str, Any], service: str, path: str, offset: int = 0, size: int | None = None,
          progress: Callable[[int], None] | None = None, alive: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """The bytes of ``path`` on the plug described by ``source`` (its plug tuple's info), from ``offset`` to the end,
    or to ``size`` when the expected size is known (the caller checks the content's hash in any case).

    Raises :class:`TransferError` if the source refuses, stays silent for :data:`TIMEOUT` seconds, or, while it is
    silent, ``alive`` says it is gone (a killed source is given up at once, not after the whole timeout).
    """
    endpoint, key = str(source["endpoint"]), str(source["key"])
    sock = _connections.get(endpoint, key)
    where = f"{service}: {path}"
    finished = False
    try:
        asked: dict[int, int] = {}
        wanted, done = offset, size is not None and offset >= size
        while not done or asked:
            while not done and len(asked) < WINDOW and (size is None or wanted < size):
                rid = next(_request_ids)
                asked[rid] = wanted
                sock.send(msgpack.packb([source["secret"], rid, path, wanted, CHUNK]))
                wanted += CHUNK
            if not asked:
                break
            silent = 0.0
            while not sock.poll(int(CHECK * 1000)):
                silent += CHECK
                if silent >= TIMEOUT:
                    raise TransferError(f"{where}: no answer from {endpoint} for {TIMEOUT:.0f} s")
                if alive is not None and not alive():
                    raise TransferError(f"{where}: the source stopped (its plug is gone)")
            rid, ok, body = msgpack.unpackb(sock.recv(), raw=False)
            if rid not in asked:
                continue  # the late answer to a transfer given up
            if not ok:
                raise TransferError(f"{where}: {body}")
            at = asked.pop(rid)
            if at != offset:  # answers come in order on one connection; anything else is a broken peer
                raise TransferError(f"{where}: chunk at {at} arrived while expecting {offset}")
            if len(body) < CHUNK or (size is not None and offset + len(body) >= size):
                done = True
                asked.clear()
            if body:
                offset += len(body)
                if progress:
                    progress(len(body))
                yield body
        finished = True
    finally:
        if finished:
            _connections.put(endpoint, key, sock)
        else:  # given up, or the caller stopped reading: answers may still come, or the source is gone
            sock.close(0)
