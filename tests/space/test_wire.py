"""The replication link's transport (onitu/space/wire.py) on real Unix sockets: frames arrive whole and in order
whatever the kernel's buffers split, a lost connection is dialled again, and bytes that are no frame of ours end
the connection."""

from __future__ import annotations

import asyncio
import socket

from onitu.space.wire import Dialer, Listener, Stream


async def _until(check, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_frames_arrive_whole_and_in_order_and_a_lost_connection_is_dialled_again(tmp_path):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        received: list[bytes] = []
        lost: list[Stream] = []
        listener = Listener(f"ipc://{tmp_path}/replica.sock")

        def drain() -> None:
            for stream in listener.streams:
                while stream.inbox:
                    received.append(stream.inbox.popleft())

        listener.start(loop, drain, lost.append)
        connects: list[int] = []
        dialer = Dialer(f"ipc://{tmp_path}/replica.sock", lambda: None, lambda: connects.append(1), lambda: None)
        dialer.start(loop)
        await _until(lambda: dialer.stream is not None)
        big = bytes(range(256)) * (8 << 12)  # 8 MiB: far more than a socket buffer, sent in many pieces
        frames = [b"a", b"", big, *(i.to_bytes(4, "big") for i in range(1000))]
        for frame in frames:
            assert dialer.send(frame)
        await _until(lambda: len(received) == len(frames))
        assert received == frames

        listener.streams[0].close()  # the secondary's side hangs up: the primary dials again
        await _until(lambda: len(connects) == 2 and dialer.stream is not None)
        assert len(lost) == 1
        assert dialer.send(b"again")
        await _until(lambda: received[-1:] == [b"again"])
        dialer.close()
        listener.close()
        assert not dialer.send(b"dropped")

    asyncio.run(main())


def test_bytes_that_are_no_frame_of_ours_end_the_connection(tmp_path):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lost: list[Stream] = []
        listener = Listener(f"ipc://{tmp_path}/replica.sock")
        listener.start(loop, lambda: None, lost.append)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(f"{tmp_path}/replica.sock")
            sock.sendall(b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f")  # a zmq peer's greeting: a ~4 GiB "length"
            await _until(lambda: len(lost) == 1)
            sock.settimeout(5)
            assert sock.recv(1) == b""  # hung up on
        listener.close()

    asyncio.run(main())
