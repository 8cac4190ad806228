"""The asyncio client: the same operations, many in flight on one connection."""

from __future__ import annotations

import asyncio

import pytest

from onitu.space import RequestExpired, aconnect


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_operations(server):
    async def main():
        async with await aconnect(server.ipc) as space:
            entry = await space.write(["a", 1], lease=10)
            assert await space.read(["a", None]) == ("a", 1)
            assert await space.read_all(["a", int]) == [("a", 1)]
            await entry.renew(None)
            assert await space.take(["a", None], 0) == ("a", 1)
            with pytest.raises(RequestExpired):
                await space.take(["a", None], 0)
            assert (await space.batch([("write", ["b", 2]), ("take", ["b", None])]))[1] == ("b", 2)
            assert (await space.stats())["tuples"] == 0

    run(main())


def test_many_blocked_takes_in_flight_on_one_connection(server):
    async def main():
        async with await aconnect(server.ipc) as space:
            takers = [asyncio.create_task(space.take(["job", i], 20)) for i in range(50)]
            await asyncio.sleep(0.2)
            await asyncio.gather(*(space.write(["job", i]) for i in reversed(range(50))))
            assert await asyncio.gather(*takers) == [("job", i) for i in range(50)]

    run(main())


def test_notify_and_timeout(server):
    async def main():
        async with await aconnect(server.ipc) as space:
            note = await space.notify(["write", "take"], ["n", None])
            await space.write(["n", 1])
            await space.take(["n", None])
            kinds = [(await note.next(5)).kind for _ in range(2)]
            assert kinds == ["write", "take"]
            with pytest.raises(RequestExpired):
                await note.next(0.2)
            await note.close()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(RequestExpired):
                await space.read(["never"], 0.3)
            assert 0.3 <= loop.time() - t0 < 0.4

    run(main())


def test_session_close_cancels_nothing_it_does_not_own(server):
    async def main():
        a = await aconnect(server.ipc)
        b = await aconnect(server.ipc)
        await a.write(["mine"], lease="session")
        await b.write(["theirs"], lease="session")
        await a.close()
        assert await b.read_all([None]) == [("theirs",)]
        await b.close()

    run(main())


def test_requests_in_flight_are_answered_without_a_resend(server):
    # A send can consume the edge of zmq's edge-triggered FD: an asyncio socket must see every send, or replies
    # sit unread until the client's retry resends (the server then answers from its reply cache, counted).
    async def main():
        async with await aconnect(server.ipc) as space:
            gate = asyncio.Semaphore(4)

            async def one(i):
                async with gate:
                    await space.batch([("write", ["bulk", i, j]) for j in range(50)])

            await asyncio.gather(*(one(i) for i in range(100)))
            stats = await space.stats()
            assert stats["tuples"] == 5000
            assert stats.get("retries_answered", 0) == 0

    run(main())
