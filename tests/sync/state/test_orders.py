"""onitu.sync.state.orders: the orders under way, what they keep busy, and what waits on them."""

from __future__ import annotations

from onitu.space import TupleSpace
from onitu.sync import tuples
from onitu.sync.decide.plan import Copy, Delete, Mkdir, Move
from onitu.sync.state.ledger import Ledger
from onitu.sync.state.orders import ORDER_SIZE, Orders


def test_an_order_keeps_its_paths_and_their_trees_busy_until_done():
    with TupleSpace() as space:
        orders = Orders(Ledger(), space)
        (oid,) = set(orders.send([("docs", Move("a/b", "c", "s", "dir"))]))
        for busy in ("a/b", "a", "a/b/x/y", "c", "c/z"):
            assert orders.is_busy("docs", busy), busy
        for free in ("a/bc", "b", "cc", ""):
            assert not orders.is_busy("docs", free), free
        assert not orders.is_busy("other", "a/b")
        assert len(orders) == 1 and orders.actions == 1
        order, waiting = orders.done(oid)
        assert order is not None and order.paths == ("a/b", "c") and waiting == []
        assert not orders.is_busy("docs", "a/b") and len(orders) == 0 and orders.actions == 0
        assert orders.done(oid) == (None, []) and orders.done("not an id") == (None, [])


def test_actions_go_in_orders_of_at_most_order_size_per_plug():
    with TupleSpace() as space:
        orders = Orders(Ledger(), space)
        actions = [("docs", Mkdir(f"d{i}", "s")) for i in range(ORDER_SIZE + 1)] + [("docs", Delete("x", "t", "dir"))]
        oids = orders.send(actions)
        assert len(set(oids[:ORDER_SIZE])) == 1 and oids[ORDER_SIZE] != oids[0] and oids[-1] not in oids[:-1]
        written = space.read_all((tuples.ORDER, None, None, None))
        assert sorted(len(t[3]["actions"]) for t in written) == [1, 1, ORDER_SIZE]
        assert orders.pending() == {("docs", "s"): (ORDER_SIZE + 1, 0), ("docs", "t"): (1, 0)}
        again = Orders(Ledger(), space)  # a restarted referee takes up the orders waiting in the space
        again.load()
        assert again.pending() == orders.pending() and again.is_busy("docs", "d3")


def test_what_waits_on_an_order_comes_back_with_it_and_a_burst_ends_once():
    with TupleSpace() as space:
        orders = Orders(Ledger(), space)
        assert not orders.burst_over()
        (oid,) = orders.send([("docs", Mkdir("d", "s"))])
        later = Copy("f", "t", ("s",), "0" * 64, 1, None)
        orders.after(oid, "docs", later)
        assert not orders.burst_over()
        assert orders.done(oid)[1] == [("docs", later)]
        assert orders.burst_over() and not orders.burst_over()
