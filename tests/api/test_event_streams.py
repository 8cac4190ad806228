"""The API's reader of one space subscription, against a real space server: a subscription the server ends (as
when it takes the API's session for dead under load) is reported as lost, so the event stream subscribes again and
tells the page to resync, instead of going silent for good."""

from __future__ import annotations

import asyncio

from onitu.api.events import _read
from onitu.space.connect import aconnect
from onitu.space.errors import EventsLost
from tests.helpers import ServerProcess


def test_a_subscription_the_space_ends_is_reported_lost(tmp_path):
    server = ServerProcess(tmp_path).start()

    async def main() -> object:
        space = await aconnect(server.ipc)
        try:
            note = await space.notify("write", ("sync.meta", None, None), lease=0.3)  # the server ends it at 0.3 s
            queue: asyncio.Queue = asyncio.Queue()
            reader = asyncio.create_task(_read(0, note, queue))
            try:
                _, what = await asyncio.wait_for(queue.get(), 10)
            finally:
                reader.cancel()
            return what
        finally:
            await space.close()

    try:
        assert isinstance(asyncio.run(main()), EventsLost)
    finally:
        server.stop()
