"""The reply cache a space server keeps for retries: what it keeps, what acknowledgements and session ends forget,
and the bounds that keep a client that never acknowledges from filling the server's memory."""

from __future__ import annotations

from onitu.space import replies
from onitu.space.replies import ReplyCache

A, B = b"a" * 16, b"b" * 16


def test_replies_are_kept_until_acknowledged_or_their_session_ends():
    cache = ReplyCache()
    for seq in (1, 2, 3):
        cache.put(A, seq, b"x" * seq)
    cache.put(B, 1, b"y")
    assert cache.get(A, 2) == b"xx" and cache.get(B, 1) == b"y" and cache.get(A, 9) is None
    assert cache.acknowledge(A, 3) is True
    assert cache.get(A, 2) is None and cache.get(A, 3) == b"xxx"
    assert (len(cache), cache.size()) == (2, 4)
    cache.forget(B)
    assert cache.acknowledge(B, 5) is False, "nothing cached: nothing to forget on disk either"
    assert sorted(cache.items()) == [(A, 3, b"xxx")]
    assert cache.evicted == 0


def test_a_session_that_never_acknowledges_keeps_its_newest_replies_within_the_bounds(monkeypatch):
    monkeypatch.setattr(replies, "MAX_BYTES", 10_000)
    cache = ReplyCache()
    for seq in range(1, 101):  # write a big tuple, take it, again: each take's answer is cached
        cache.put(A, seq, b"t" * 1000)
    cache.put(B, 1, b"small")
    assert cache.size() == 10_000 + 5 and len(cache) == 11
    assert cache.get(A, 100) is not None and cache.get(A, 90) is None and cache.get(A, 91) is not None
    assert cache.evicted == 90
    monkeypatch.setattr(replies, "MAX_COUNT", 3)
    for seq in range(101, 106):
        cache.put(A, seq, b"t")
    assert sorted(seq for sid, seq, _ in cache.items() if sid == A) == [103, 104, 105]
    assert cache.get(B, 1) == b"small", "another session's replies are not its to lose"


def test_a_reply_bigger_than_the_bound_is_still_kept_alone():
    """The newest reply is always kept: a retry of the request just answered must find it."""
    cache = ReplyCache()
    cache.put(A, 1, b"a")
    cache.put(A, 2, b"z" * (replies.MAX_BYTES + 1))
    assert cache.get(A, 2) is not None and cache.get(A, 1) is None and len(cache) == 1
