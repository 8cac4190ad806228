"""The replies a space server keeps for retries: per session, its answers to mutations that the client has not yet
acknowledged, so that a retried take returns the tuple it took instead of taking another.

A client acknowledges with every request (see :mod:`onitu.space.core`); one that never does, buggy or hostile,
would have the server keep every answer. Per-key limits count the tuples a client stores, not these: writing a big
tuple and taking it, again and again, would turn a small quota into gigabytes of cached answers. So each session's
cache is bounded in count and in bytes; past either bound its oldest replies are forgotten (a retry of one of those
would run again, which only such a client can cause) and counted.
"""

from __future__ import annotations

from collections.abc import Iterator

MAX_COUNT = 10_000  # replies per session
MAX_BYTES = 64 << 20  # bytes of replies per session


class ReplyCache:
    """Per session: sequence number -> encoded reply, oldest first, within :data:`MAX_COUNT` and :data:`MAX_BYTES`."""

    def __init__(self) -> None:
        self._by_session: dict[bytes, dict[int, bytes]] = {}
        self._bytes: dict[bytes, int] = {}
        self.evicted = 0  # replies forgotten before they were acknowledged

    def __len__(self) -> int:
        return sum(len(cache) for cache in self._by_session.values())

    def size(self) -> int:
        """Bytes of replies held."""
        return sum(self._bytes.values())

    def get(self, sid: bytes, seq: int) -> bytes | None:
        cache = self._by_session.get(sid)
        return None if cache is None else cache.get(seq)

    def put(self, sid: bytes, seq: int, body: bytes) -> None:
        cache = self._by_session.setdefault(sid, {})
        held = self._bytes.get(sid, 0) - len(cache.get(seq, b"")) + len(body)
        cache[seq] = body
        while len(cache) > 1 and (len(cache) > MAX_COUNT or held > MAX_BYTES):
            held -= len(cache.pop(next(iter(cache))))
            self.evicted += 1
        self._bytes[sid] = held

    def acknowledge(self, sid: bytes, below: int) -> bool:
        """Forget the replies of ``sid`` numbered below ``below``; whether it had any cached."""
        cache = self._by_session.get(sid)
        if not cache:
            return False
        for seq in [s for s in cache if s < below]:
            self._bytes[sid] -= len(cache.pop(seq))
        return True

    def forget(self, sid: bytes) -> None:
        """The session ended: nothing of it can be retried."""
        self._by_session.pop(sid, None)
        self._bytes.pop(sid, None)

    def clear(self) -> None:
        self._by_session.clear()
        self._bytes.clear()

    def items(self) -> Iterator[tuple[bytes, int, bytes]]:
        """Every cached reply as (session, sequence number, body)."""
        for sid, cache in self._by_session.items():
            for seq, body in cache.items():
                yield sid, seq, body
