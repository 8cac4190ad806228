"""One event loop thread per process, for drivers whose client library is asynchronous (asyncssh)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")
TIMEOUT = 20.0  # seconds one request may take before it is given up (a frozen server)

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    """The process's driver event loop, started on first use in a daemon thread."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="onitu-driver-loop", daemon=True).start()
        return _loop


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def run(awaitable: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """Run ``awaitable`` on the driver loop and wait for its result (TimeoutError after ``timeout`` seconds)."""
    future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise
