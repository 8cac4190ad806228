"""A responder's cover thread answers pings while its loop is blocked in a write, within a patience, and only then."""

from __future__ import annotations

import asyncio
import threading
import time

import msgpack
import zmq

from onitu.heartbeat import Responder


class Watchdog:
    """The watchdog's side: a ROUTER that pings one responder and collects what it answers."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.linger = 0
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"

    def ask(self, msg: dict, wait: float = 1.5) -> dict | None:
        self.sock.send_multipart([b"space", msgpack.packb(msg)])
        if self.sock.poll(int(wait * 1000)):
            return msgpack.unpackb(self.sock.recv_multipart()[1])
        return None

    def close(self) -> None:
        self.sock.close(0)


def test_pings_are_answered_only_while_blocked_in_a_write_for_less_than_the_patience() -> None:
    dog = Watchdog()
    blocked: list[float | None] = [None]
    commands: list[str] = []
    responder = Responder(dog.endpoint, "space", lambda: {"ok": True},
                          lambda msg: commands.append(msg["command"]) or {})
    loop = asyncio.new_event_loop()
    try:
        responder._loop = loop  # attached, but the loop is not running: blocked
        responder.cover(lambda: blocked[0], patience=3.0)
        time.sleep(0.3)  # the DEALER connects
        assert dog.ask({"op": "ping", "n": 1}, wait=1.0) is None  # blocked, but not in a write: no answer
        blocked[0] = time.monotonic()
        assert dog.ask({"op": "ping", "n": 2})["n"] in (1, 2)  # the cover answers (the first ping too, late)
        assert dog.ask({"op": "command", "n": 3, "command": "solo"}, wait=0.5) is None  # commands wait for the loop
        assert commands == []
        blocked[0] = time.monotonic() - 10  # in one write for longer than the patience: a hang after all
        while dog.sock.poll(300):
            dog.sock.recv_multipart()
        assert dog.ask({"op": "ping", "n": 4}, wait=1.0) is None
        blocked[0] = None
        threading.Timer(0.5, loop.stop).start()
        loop.run_forever()  # the loop runs again: the command it was left is carried out and answered
        assert commands == ["solo"]
        answers = []
        while dog.sock.poll(300):
            answers.append(msgpack.unpackb(dog.sock.recv_multipart()[1]))
        assert {"op": "done", "n": 3} in [{k: a[k] for k in ("op", "n")} for a in answers]
    finally:
        responder.close()
        loop.close()
        dog.close()
