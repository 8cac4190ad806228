"""The few pyzmq calls every request goes through, taken from its Cython layer.

``zmq.Socket`` wraps these in Python (``poll`` builds a Poller per call, ``get`` turns its result into an enum,
``send`` checks copy thresholds): a quarter of a client's time per request and a good part of the server's,
measured with bench/space_vs_rinda.py's pattern. Options are passed as enum members: pyzmq's ``get`` converts
its option to a ``SocketOption`` first, and a member converts at once where an int costs a lookup.
"""

from __future__ import annotations

import struct

import zmq

POLLIN = int(zmq.POLLIN)
NOBLOCK, SNDMORE_NOBLOCK = int(zmq.NOBLOCK), int(zmq.SNDMORE | zmq.NOBLOCK)
EVENTS, RCVMORE = zmq.SocketOption.EVENTS, zmq.SocketOption.RCVMORE

get, recv, send = zmq.backend.Socket.get, zmq.backend.Socket.recv, zmq.backend.Socket.send
zmq_poll = zmq.zmq_poll


def readable(sock: zmq.Socket) -> bool:
    """Is a message waiting? (Also lets libzmq process its commands: zmq's FD is edge-triggered.)"""
    return bool(get(sock, EVENTS) & POLLIN)


def wait_readable(sock: zmq.Socket, timeout_ms: int) -> bool:
    """Wait up to ``timeout_ms`` for a message, without receiving it."""
    return bool(zmq_poll([(sock, POLLIN)], timeout_ms))


def monitor_event(frames: list[bytes]) -> int:
    """The event number of a zmq monitor message, as zmq.utils.monitor.parse_monitor_message reads it (importing
    that module loads zmq.asyncio and asyncio: it doubled the cost of importing the space client, which every onitu
    make that joins a space and every sub-make pays)."""
    return struct.unpack_from("=h", frames[0])[0]
