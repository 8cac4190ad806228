"""File contents from plug to plug, chunk by chunk, never through the space.

Every plug serves its replica's files with a :class:`onitu.chunks.ChunkServer`, whose endpoint, key and secret are
in its session-leased plug tuple. A request is ``[secret, request_id, path, offset, length]``; the answer
``[request_id, ok, data or error]``. The fetching side keeps a few requests in flight so a transfer is not one round
trip per chunk, and the receiving driver checks the sha256 of the whole file before anything becomes visible.
Small files (one chunk at most) go many to a request, ``[secret, request_id, [path, ...]]``, answered with one
``[ok, data or error]`` per path: a round trip per file would cost more than the file.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import zmq

from onitu.chunks import ChunkServer, TransferError
from onitu.space.auth import ephemeral_client
from onitu.sync.drivers.contract import CHUNK, Driver, DriverError

WINDOW = 4  # chunks in flight per transfer
TIMEOUT = 30.0  # seconds without an answer before a source is given up
CHECK = 1.0  # seconds without an answer between two checks that the source still runs
KEPT = 8  # connections a thread keeps open
MANY = 64  # files of one chunk at most per request


def serve_files(driver: Driver, allowed: Callable[[str], bool]) -> ChunkServer:
    """A chunk server of ``driver``'s files whose paths ``allowed`` accepts: a request's arguments are ``[path,
    offset, length]`` (at most one chunk), its answer the bytes read."""

    def read(peer: bytes, args: list[Any]) -> bytes | list[list[Any]]:
        if len(args) == 1 and isinstance(args[0], list) and 0 < len(args[0]) <= MANY:
            return [whole(path) for path in args[0]]
        if len(args) != 3:
            raise TransferError("not a chunk request")
        path, offset, length = args
        if not (isinstance(path, str) and type(offset) is int and type(length) is int
                and offset >= 0 and 0 < length <= CHUNK):
            raise TransferError("malformed chunk request")
        if not allowed(path):
            raise TransferError(f"{path!r:.80} is not in a synced folder")
        return driver.read(path, offset, length)

    def whole(path: Any) -> list[Any]:
        """[True, the first chunk of the file] or [False, why not]: one answer of a request for many."""
        try:
            return [True, read(b"", [path, 0, CHUNK])]
        except (TransferError, DriverError) as exc:
            return [False, str(exc)]

    return ChunkServer(read, f"onitu-chunks-{driver.service}", refused=(DriverError,))


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
            rid, ok, body = _receive(sock, where, endpoint, alive)
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


def fetch_many(source: dict[str, Any], service: str, paths: list[str],
               alive: Callable[[], bool] | None = None) -> list[bytes | str]:
    """The whole of each of ``paths`` (files of one chunk at most, :data:`MANY` at most) on the plug ``source``
    describes, in one round trip: for each, its bytes or why the source could not read it.

    Raises :class:`TransferError` if the source refuses the request as a whole (a chunk server that serves one range
    at a time), stays silent, or is gone, as :func:`fetch` does.
    """
    endpoint, key = str(source["endpoint"]), str(source["key"])
    where = f"{service}: {len(paths)} files from {paths[0]!r:.80} on"
    sock = _connections.get(endpoint, key)
    answered = False
    try:
        rid = next(_request_ids)
        sock.send(msgpack.packb([source["secret"], rid, paths]))
        got, ok, body = _receive(sock, where, endpoint, alive)
        while got != rid:  # the late answer to a transfer given up
            got, ok, body = _receive(sock, where, endpoint, alive)
        answered = True
        if not ok:
            raise TransferError(f"{where}: {body}")
        if not (isinstance(body, list) and len(body) == len(paths)
                and all(isinstance(one, list) and len(one) == 2 for one in body)):
            raise TransferError(f"{where}: a malformed answer from {endpoint}")
        return [data if ok and isinstance(data, bytes) else str(data) for ok, data in body]
    finally:
        if answered:
            _connections.put(endpoint, key, sock)
        else:
            sock.close(0)


def _receive(sock: zmq.Socket, where: str, endpoint: str, alive: Callable[[], bool] | None) -> list[Any]:
    """The next answer on ``sock``: [request id, ok, body]. Raises :class:`TransferError` after :data:`TIMEOUT`
    seconds of silence, or as soon as ``alive`` says the source is gone."""
    silent = 0.0
    while not sock.poll(int(CHECK * 1000)):
        silent += CHECK
        if silent >= TIMEOUT:
            raise TransferError(f"{where}: no answer from {endpoint} for {TIMEOUT:.0f} s")
        if alive is not None and not alive():
            raise TransferError(f"{where}: the source stopped (its plug is gone)")
    answer = msgpack.unpackb(sock.recv(), raw=False)
    if not (isinstance(answer, list) and len(answer) == 3):
        raise TransferError(f"{where}: a malformed answer from {endpoint}")
    return answer
