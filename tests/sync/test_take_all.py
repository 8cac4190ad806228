"""Taking the reports and results a referee applied (:func:`onitu.sync.tuples.take_all`), on a real server (the
``server`` fixture of tests.helpers)."""

from __future__ import annotations

from onitu.space import connect
from onitu.sync import tuples


def test_tuples_taken_twice_or_already_gone_cost_a_few_round_trips(server):
    """After a lost report stream the same report can be applied twice (from the backlog, then the new stream), and
    one can be gone: the rest is still taken, in a few batches, not one take per tuple."""
    with connect(server.ipc) as space:
        space.batch([("write", (tuples.REPORT, "a", "plug", seq, {"n": seq}), None) for seq in range(600)])
        applied = [(tuples.REPORT, "a", "plug", seq, None) for seq in range(600)]
        applied += applied[100:103]  # applied again
        for seq in (5, 300, 599):
            space.take((tuples.REPORT, "a", "plug", seq, None))  # gone already
        calls = []
        batch, take = space.batch, space.take
        space.batch = lambda ops: calls.append(len(ops)) or batch(ops)  # counted, then sent to the real server
        space.take = lambda *args, **kw: calls.append(1) or take(*args, **kw)
        tuples.take_all(space, applied)
        assert applied == [] and space.read_all((tuples.REPORT, None, None, None, None)) == []
        assert len(calls) <= 3 + 3 * 2 * 8, calls  # 3 batches, and for each missing tuple a bisection of 256


def test_what_cannot_be_taken_while_the_space_is_away_is_kept_for_next_time(server, tmp_path):
    space = connect(server.ipc, connect_timeout=1)
    try:
        space.write((tuples.REPORT, "a", "plug", 1, {}))
        server.stop()
        applied = [(tuples.REPORT, "a", "plug", seq, None) for seq in range(300)]
        tuples.take_all(space, applied)
        assert applied == [(tuples.REPORT, "a", "plug", seq, None) for seq in range(300)]
    finally:
        space.close()
