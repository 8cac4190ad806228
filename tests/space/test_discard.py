"""batch(["discard", template]): a take whose answer holds no tuple, for a consumer that has it already (a
referee consuming 256 reports of 140 KB took back 36 MB in one answer, cached, committed and shipped)."""

from __future__ import annotations

import pytest

from onitu.space import RequestExpired


def test_discard_removes_as_a_take_and_answers_none(ts):
    ts.batch([("write", ("report", i, "x" * 1000), None) for i in range(3)])
    events = ts.notify("take", ("report", None, None))
    answer = ts.batch([("discard", ("report", 0, None)), ("take", ("report", 1, None))])
    assert answer == [None, ("report", 1, "x" * 1000)]
    assert [events.next(5).tuple[1] for _ in range(2)] == [0, 1], "a discard is a take to whoever watches"
    assert ts.read_all(("report", None, None)) == [("report", 2, "x" * 1000)]
    with pytest.raises(RequestExpired):  # all or nothing, as a take
        ts.batch([("discard", ("report", 2, None)), ("discard", ("report", 0, None))])
    assert ts.read_all(("report", None, None)) == [("report", 2, "x" * 1000)]
    written, discarded = ts.batch([("write", ("fresh", 1), None), ("discard", ("fresh", None))])
    assert type(written) is int and discarded is None and ts.read_all(("fresh", None)) == []
