"""File contents between processes, never through the space: one request server for the sync hub's plugs and for
``onitu make``'s file server.

A :class:`ChunkServer` answers on a ZeroMQ ROUTER socket, CURVE-encrypted with a key pair made for it alone; its
endpoint, public key and a secret are published in a tuple, which only clients of the space can read. A request is
the msgpack list ``[secret, request_id, *arguments]``; the answer ``[request_id, ok, body or error]``. What the
arguments mean is the owner's ``handle``: a plug serves ranges of its replica's files, make's coordinator serves and
takes build files by sha256. A request with the wrong secret, or that ``handle`` refuses, gets an error answer
naming why; nothing a peer sends stops the server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from onitu.logs import lazy_logger

log = lazy_logger(__name__)

Handler = Callable[[bytes, list[Any]], Any]  # (peer identity, the request's arguments) -> the answer's body


class TransferError(Exception):
    """A file could not be sent, received or staged (the message names the file and the peer)."""


class ChunkServer:
    """Answers requests with ``handle`` from a thread until :meth:`close`.

    ``refused``: the exceptions ``handle`` raises to refuse a request (answered as errors, logged at
    ``log_level``); :class:`TransferError` and malformed requests always are.
    """

    def __init__(self, handle: Handler, name: str, *, refused: tuple[type[Exception], ...] = (),
                 bind: str = "tcp://127.0.0.1:*", log_level: int = 10) -> None:  # logging.DEBUG
        # imported here: make's coordinator and workers import this module for TransferError on every run,
        # and a server is rare
        import hmac
        import secrets

        import msgpack
        import zmq

        self._msgpack, self._same = msgpack, hmac.compare_digest
        self.handle, self.name, self.log_level = handle, name, log_level
        self.refused = (TransferError, ValueError, TypeError, msgpack.UnpackException, *refused)
        self.secret = secrets.token_hex(16)

        from onitu.space.auth import ephemeral_server

        self.ctx = zmq.Context()
        self.sock, self.key = ephemeral_server(self.ctx, bind)
        self.endpoint = self.sock.last_endpoint.decode()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
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
            self.sock.send_multipart([peer, self._msgpack.packb(self._answer(peer, raw))])

    def _answer(self, peer: bytes, raw: bytes) -> list[Any]:
        rid: Any = None
        try:
            req = self._msgpack.unpackb(raw, raw=False)
            if not (isinstance(req, list) and len(req) >= 2):
                raise TransferError("not a request")
            token, rid = req[0], req[1]
            if not isinstance(token, str) or not self._same(token, self.secret):
                raise TransferError("wrong secret")
            return [rid, True, self.handle(peer, req[2:])]
        except self.refused as exc:
            log.log(self.log_level, "%s: refused a request: %s", self.name, exc)
            return [rid, False, str(exc)]
