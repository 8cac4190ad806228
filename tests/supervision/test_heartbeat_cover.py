"""A responder's cover thread answers pings while its loop waits on one disk step, within a patience, and only then;
commands wait for the loop."""

from __future__ import annotations

import asyncio
import time

import msgpack
import zmq

from onitu.heartbeat import Responder


class Watchdog:
    """The watchdog's side: a ROUTER that asks one responder and collects what it answers."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.linger = 0
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"

    def ask(self, msg: dict, wait: float = 1.0) -> dict | None:
        """Send, and return the answer with the same ``n`` (earlier, late answers are skipped), or None."""
        self.sock.send_multipart([b"space", msgpack.packb(msg)])
        deadline = time.monotonic() + wait
        while self.sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            answer = msgpack.unpackb(self.sock.recv_multipart()[1])
            if answer.get("n") == msg["n"]:
                return answer
        return None

    def close(self) -> None:
        self.sock.close(0)


def test_pings_are_answered_only_while_the_loop_waits_on_one_disk_step_shorter_than_the_patience() -> None:
    dog = Watchdog()
    on_disk: list[float | None] = [None]
    commands: list[str] = []
    responder = Responder(dog.endpoint, "space", lambda: {"ok": True},
                          lambda msg: commands.append(msg["command"]) or {})
    loop = asyncio.new_event_loop()
    try:
        responder.attach(loop, lambda: on_disk[0], patience=3.0)  # the loop is not running: it is stuck
        time.sleep(0.3)  # the DEALER connects
        assert dog.ask({"op": "ping", "n": 1}) is None  # stuck, and not on the disk: no answer
        on_disk[0] = time.monotonic()
        assert dog.ask({"op": "ping", "n": 2})["op"] == "pong"  # on the disk: the cover answers
        assert dog.ask({"op": "command", "n": 3, "command": "solo"}, wait=0.5) is None  # commands wait for the loop
        assert commands == []
        on_disk[0] = time.monotonic() - 10  # on one disk step for longer than the patience: a hang after all
        assert dog.ask({"op": "ping", "n": 4}) is None
        on_disk[0] = None
        # The loop runs again: it answers the pings it was left and carries out the command.
        answers = []
        loop.run_until_complete(asyncio.sleep(0.5))
        while dog.sock.poll(300):
            answers.append(msgpack.unpackb(dog.sock.recv_multipart()[1]))
        assert commands == ["solo"]
        assert {(a["op"], a["n"]) for a in answers} >= {("done", 3), ("pong", 4)}
    finally:
        responder.close()
        loop.close()
        dog.close()
