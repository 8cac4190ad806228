"""The referee in-process, with pretend plugs: how much it asks of the plugs at once."""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from onitu.sync import referee as referee_module
from onitu.sync import tuples
from onitu.sync.decide.plan import Observed
from onitu.sync.referee import Referee
from onitu.sync.state.record import decode
from tests.sync.pretend import SERVICES, Plugs, obs, pretend_hub


@pytest.fixture
def hub(tmp_path):
    yield from pretend_hub(tmp_path)


def test_a_large_tree_is_ordered_as_the_plugs_keep_up(hub, monkeypatch):
    monkeypatch.setattr(referee_module, "PASS_SIZE", 10)
    monkeypatch.setattr(referee_module, "OUTSTANDING", 20)
    referee, plugs = hub
    plugs.listing([])
    files = [f"f{i:03}.txt" for i in range(100)]
    plugs.report("a", [(p, obs(p)) for p in files])  # a hundred new files on a
    referee.decide()
    assert len(plugs.actions()) == 20, "a pass of 10 files makes 20 copies; then the referee waits for results"
    copied = set()
    for _ in range(20):
        copied.update((service, path) for service, _, path in plugs.actions())
        for order in plugs.orders():
            plugs.done(order)
        referee.ledger.commit(referee.space)
        referee.decide()
        assert len(plugs.actions()) <= 20
    assert copied == {(s, p) for s in ("b", "c") for p in files}
    assert not plugs.orders() and not referee.orders and not referee.dirty["docs"]
    assert all(referee.ledger.held[s, "docs"].keys() >= set(files) for s in ("a", "b", "c"))


def test_orders_go_as_rows_to_a_plug_that_reads_them_and_as_dicts_to_one_of_an_earlier_version(hub):
    referee, plugs = hub
    plugs.space.take((tuples.PLUG, "b", None))
    plugs.space.write((tuples.PLUG, "b", {"id": "plug-b", "available": True, "rows": True}))
    referee._refresh_plugs()
    plugs.listing([])
    plugs.report("a", [("f.txt", obs("f.txt"))])
    referee.decide()
    forms = {t[1]: (type(t[3]["actions"][0]), type(t[3]["metas"][0])) for t in plugs.orders()}
    assert forms == {"b": (list, list), "c": (dict, dict)}
    for order in plugs.orders():
        plugs.done(order)  # its result carries the order's body back, in its form
    referee.ledger.commit(referee.space)
    referee.decide()
    assert not plugs.orders() and not referee.orders
    assert all("f.txt" in referee.ledger.held[s, "docs"] for s in SERVICES)


def test_new_files_are_split_into_passes_without_a_view_of_them_all_and_a_deletion_among_them_is_seen(hub,
                                                                                                       monkeypatch):
    """Splitting a big batch into passes looks for renames and counts deletions across all of it: a view of every
    path on every replica (600 bytes a path, the referee's peak in a first sync of a million files). Where no replica
    lost a path it held, there is none to find, and no such view is made; one lost path brings it back."""
    monkeypatch.setattr(referee_module, "PASS_SIZE", 10)
    referee, plugs = hub
    views = []
    replicas = referee._replicas
    monkeypatch.setattr(referee, "_replicas", lambda folder, paths, states: views.append(len(paths)) or
                        replicas(folder, paths, states))
    plugs.listing([])
    plugs.report("a", [(f"f{i:02}.txt", obs(f"f{i:02}.txt")) for i in range(30)])
    referee.decide()
    assert views and max(views) == 10, "passes of 10, each viewed alone"
    for _ in range(10):
        for order in plugs.orders():
            plugs.done(order)
        referee.ledger.commit(referee.space)
        referee.decide()
    assert referee.ledger.held["c", "docs"].keys() >= {f"f{i:02}.txt" for i in range(30)}
    views.clear()
    plugs.report("a", [("f00.txt", None), *((f"g{i:02}.txt", obs(f"g{i:02}.txt")) for i in range(30))])
    referee.deletions.bursts.clear()  # as if the deletions had paused: decided now
    referee.decide()
    assert max(views) == 31, "f00.txt is gone from a: the whole batch is viewed, to judge the deletion"


def test_passes_below_a_directory_being_made_wait_their_turn(hub, monkeypatch):
    """The passes after the one that makes a directory wait, in the queue, for that order's result (their paths are
    busy meanwhile); they are not thrown back to be split again, unless that lasts (STUCK seconds)."""
    monkeypatch.setattr(referee_module, "PASS_SIZE", 10)
    referee, plugs = hub
    plugs.listing([])
    files = [f"d/f{i:02}.txt" for i in range(30)]
    plugs.report("a", [("d", obs("d")), *((p, obs(p)) for p in files)])
    referee.decide()
    assert ("b", "mkdir", "d") in plugs.actions()
    passes = list(referee.queued["docs"])
    assert passes, "the other passes are queued"
    referee.decide()
    assert list(referee.queued["docs"]) == passes and not referee.dirty["docs"], "they wait, as they were"
    monkeypatch.setattr(referee_module, "STUCK", 0.0)  # waiting too long: split again with what came since
    referee.decide()
    assert not referee.queued["docs"] and referee.dirty["docs"] == {path for paths, _ in passes for path in paths}
    for _ in range(10):
        for order in plugs.orders():
            plugs.done(order)
        referee.ledger.commit(referee.space)
        referee.decide()
    assert not referee.queued["docs"] and not plugs.orders()
    assert all(referee.ledger.held[s, "docs"].keys() >= {"d", *files} for s in ("b", "c"))


def test_a_result_as_ordered_leaves_nothing_to_decide_again(hub):
    referee, plugs = hub
    plugs.listing([])
    files = [f"f{i}.txt" for i in range(5)]
    plugs.report("a", [(p, obs(p)) for p in files])
    referee.decide()
    for order in plugs.orders():
        plugs.done(order)  # each copy left what was ordered: no path is due for another decision
    assert not referee.dirty["docs"]
    referee.ledger.commit(referee.space)
    assert all(referee.ledger.held[s, "docs"].keys() == set(files) for s in ("b", "c"))


def test_queries_without_a_pause_do_not_hold_back_what_reports_recorded(hub):
    """A page polling the files route can keep a query always waiting: what the reports in between recorded is
    still committed (once seen in CI: three replicas' identical files stayed recorded on one of them for as long as
    the polling lasted, as the referee drained queries without end)."""
    referee, _ = hub
    space, answer = referee.space, referee.commands.query
    polling = threading.Event()

    def query_and_ask_again(*args) -> None:  # the next query is there before the referee looks for more
        answer(*args)
        if polling.is_set():
            space.write((tuples.QUERY, secrets.token_hex(4), "docs", "", 10), 5.0)

    referee.commands.query = query_and_ask_again
    runner = threading.Thread(target=referee.run)
    runner.start()
    try:
        polling.set()
        space.write((tuples.QUERY, secrets.token_hex(4), "docs", "", 10), 5.0)
        for service in ("a", "b", "c"):  # each lists the same file, as after `onitu start` on copies of a folder
            for seq, scan, entries in ((100, "begin", [["same.txt", tuples.obs_to_wire(obs("same.txt"))]]),
                                       (101, "end", [])):
                space.write((tuples.REPORT, service, f"plug-{service}", seq,
                             {"folder": "docs", "scan": scan, "entries": entries}))
        key = tuples.meta_key("docs", "same.txt")
        deadline, record = time.monotonic() + 10, None
        while record is None and time.monotonic() < deadline:
            found = space.read_all((tuples.META, key, None))
            record = found[0][2] if found and len(decode("same.txt", found[0][2])[1]) == 3 else None
            time.sleep(0.05)
        assert record is not None, f"never committed as held by a, b and c: {space.read_all((tuples.META, key, None))}"
    finally:
        polling.clear()
        referee.stop()
        runner.join(10)


def test_a_restarted_referee_decides_only_what_is_out_of_step_in_a_settled_folder(hub):
    """Once a folder was decided whole under its settings, a referee started again (the hub restarted) decides only
    the paths some replica's listing shows out of step, not every path; with changed settings, every path."""
    referee, plugs = hub
    files = [f"d{i}/f{j}.txt" for i in range(10) for j in range(10)]
    plugs.listing([f"d{i}" for i in range(10)] + files)  # three replicas with the same tree
    referee.decide()
    referee.ledger.commit(referee.space)
    assert not referee.undecided("docs") and not plugs.orders()
    referee._settle()
    assert referee.settled.folders == {"docs"}

    def restarted(config=referee.config) -> tuple[Referee, Plugs]:
        again = Referee(config, referee.space)
        again.start()
        return again, Plugs(referee.space, again)

    again, plugs = restarted()
    assert again.settled.folders == {"docs"} and not again.undecided("docs"), "nothing is out of step yet"
    changed = Observed("file", "0" * 64, 9, 2, "f:changed on b")
    for service in SERVICES:
        listing = [(p, obs(p)) for p in [f"d{i}" for i in range(10)] + files if p != "d5/f5.txt"]
        if service == "b":
            listing = [(p, changed if p == "d3/f3.txt" else o) for p, o in listing]
        plugs.report(service, listing, scan="begin")
        plugs.report(service, [], scan="end")
    assert again.dirty["docs"] == {"d3/f3.txt", "d5/f5.txt"}  # b's change, and a file gone everywhere

    ruled = referee.config.model_copy(update={"sync": referee.config.sync.model_copy(
        update={"deletion_threshold": 0.9})})
    third, plugs = restarted(ruled)
    assert not third.settled.folders, "other settings: the folder is decided whole again"
    plugs.listing([f"d{i}" for i in range(10)] + files)
    assert len(third.dirty["docs"]) == 110


def test_a_report_stream_the_space_ends_is_followed_again(hub):
    """The space ends a subscription when it takes the client's session for dead (under heavy load): the referee
    subscribes again and reads what it missed (it crashed on the stream's close event)."""
    referee, _ = hub
    space, notify = referee.space, referee.space.notify
    leases = [0.3]  # the first subscription ends after 0.3 s; the next ones last

    def notify_ending(events, template, lease=None, since=None):
        return notify(events, template, leases.pop() if leases else lease, since)

    referee.space.notify = notify_ending
    runner = threading.Thread(target=referee.run)
    runner.start()
    try:
        time.sleep(1.0)  # the stream has ended
        assert runner.is_alive()
        for service in ("a", "b", "c"):
            for seq, scan, entries in ((100, "begin", [["late.txt", tuples.obs_to_wire(obs("late.txt"))]]),
                                       (101, "end", [])):
                space.write((tuples.REPORT, service, f"plug-{service}", seq,
                             {"folder": "docs", "scan": scan, "entries": entries}))
        key = tuples.meta_key("docs", "late.txt")
        deadline = time.monotonic() + 10
        while not space.read_all((tuples.META, key, None)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert space.read_all((tuples.META, key, None)) and runner.is_alive()
    finally:
        referee.stop()
        runner.join(10)


def test_a_long_decision_is_answered_for(hub, monkeypatch):
    """Deciding a million paths is minutes of work on tables in memory that does not beat as it goes: the referee
    restarting a million-file hub was killed in the middle of it by its heartbeat's patience. Its decisions are
    declared busy (its load too: the watchdog hears from it throughout)."""
    monkeypatch.setattr(referee_module, "SETTLE", 0.0)
    referee, _ = hub
    busy_while_deciding, busy_while_starting = [], []
    decide, start = referee.decide, referee.start

    def watched_decide() -> None:
        busy_while_deciding.append(referee.liveness._busy > 0)
        decide()

    def watched_start():
        busy_while_starting.append(referee.liveness._busy > 0)
        return start()

    referee.decide, referee.start = watched_decide, watched_start
    runner = threading.Thread(target=referee.run)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not busy_while_deciding and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        referee.stop()
        runner.join(10)
    assert busy_while_starting == [True] and busy_while_deciding and all(busy_while_deciding)


def test_what_a_listing_under_way_shows_is_decided_before_it_ends(hub):
    """A first sync of a big folder: the source (a) is still being listed and hashed while the other replicas
    have listed theirs (empty). What a's listing has shown so far is copied at once; what it has not shown, and
    what the replicas hold that a has not shown yet, waits for its end (a path absent from a listing under way is
    not a deletion)."""
    referee, plugs = hub
    for service in ("b", "c"):
        plugs.report(service, [("old.txt", obs("old.txt"))], scan="begin")  # agreed below, from b and c
        plugs.report(service, [], scan="end")
    plugs.report("a", [("old.txt", obs("old.txt"))], scan="begin")
    plugs.report("a", [], scan="end")
    referee.decide()
    referee.ledger.commit(referee.space)
    assert not plugs.orders() and not referee.undecided("docs")

    plugs.seq += 1  # a restarted plug of a lists again, from its first entries
    plugs.space.take((tuples.PLUG, "a", None))
    plugs.space.write((tuples.PLUG, "a", {"id": "plug-a2", "available": True}))
    referee._refresh_plugs()
    body = {"folder": "docs", "scan": "begin", "entries": [[p, tuples.obs_to_wire(obs(p))] for p in
                                                               ("d", "d/new.txt", "other/x.txt")]}
    referee.inbound((tuples.REPORT, "a", "plug-a2", plugs.seq, body))
    assert referee.states("docs")["a"] == "wait"
    referee.decide()
    assert plugs.actions() == [("b", "copy", "d/new.txt"), ("b", "mkdir", "d"),
                               ("c", "copy", "d/new.txt"), ("c", "mkdir", "d")], \
        "shown with its directory: decided; other/x.txt waits for its directory; old.txt is not shown yet"
    assert "other/x.txt" in referee.dirty["docs"]

    plugs.seq += 1
    body = {"folder": "docs", "scan": "end", "entries": []}
    referee.inbound((tuples.REPORT, "a", "plug-a2", plugs.seq, body))
    referee.decide()
    assert ("b", "delete", "old.txt") in plugs.actions(), "not in the ended listing: gone from a, so everywhere"


def test_a_failed_path_that_changes_is_tried_again_at_once(hub):
    """A failed order's path waits (a delay that doubles with each failure), unless its content changes: the
    failure was about what it held before, so the new content is decided at once."""
    referee, plugs = hub
    plugs.listing([])
    plugs.report("a", [("f.txt", obs("f.txt"))])
    referee.decide()
    for order in plugs.orders():
        plugs.done(order, ok=False)
    referee.decide()
    assert not plugs.orders(), "the failed path waits its delay"
    newer = Observed("file", "0" * 64, 9, 2, "f:f.txt")
    plugs.report("a", [("f.txt", newer)])
    referee.decide()
    assert {(s, op, p) for s, op, p in plugs.actions()} == {("b", "copy", "f.txt"), ("c", "copy", "f.txt")}


def test_the_orders_of_a_replica_whose_plug_is_gone_are_withdrawn(hub, monkeypatch):
    """An order to a replica whose plug went away (an agent offline for days) does not hold its path for the others:
    once the plug has been gone ABSENT seconds (not for a restart), the order is withdrawn (its tuple taken back),
    and the path is decided again without that replica. A result of the withdrawn order that comes later is still
    recorded."""
    referee, plugs = hub
    plugs.listing([])
    plugs.report("a", [("f.txt", obs("f.txt"))])
    referee.decide()
    orders = {t[1]: t for t in plugs.orders()}
    plugs.done(orders["b"])
    referee.ledger.commit(referee.space)
    plugs.space.take((tuples.PLUG, "c", None))  # c's plug is gone, its order not done
    referee._refresh_plugs()
    assert [t[1] for t in plugs.orders()] == ["c"], "gone a moment (a plug restarting): its order waits for it"
    monkeypatch.setattr(referee_module, "ABSENT", 0.0)
    referee._refresh_plugs()
    assert not plugs.orders() and not referee.orders, "c's order withdrawn"
    newer = Observed("file", "0" * 64, 9, 2, "f:f.txt")
    plugs.report("a", [("f.txt", newer)])
    referee.decide()
    assert plugs.actions() == [("b", "copy", "f.txt")], "decided again, for b alone"
    plugs.space.write(orders["c"])  # c, back, had carried the withdrawn order out: its result, order gone
    plugs.done(orders["c"])
    assert referee.ledger.holds("c", "docs", "f.txt") == tuples.order_from_wire(orders["c"][3])[1][0]


def test_the_orders_of_a_replica_whose_root_is_unavailable_are_withdrawn(hub, monkeypatch):
    """A plug that runs but whose root is gone (a disk unplugged) cannot carry its orders out either."""
    referee, plugs = hub
    plugs.listing([])
    plugs.report("a", [("f.txt", obs("f.txt"))])
    referee.decide()
    monkeypatch.setattr(referee_module, "ABSENT", 0.0)
    plugs.space.take((tuples.PLUG, "c", None))
    plugs.space.write((tuples.PLUG, "c", {"id": "plug-c", "available": False, "reason": "root unmounted"}))
    referee._refresh_plugs()
    assert [t[1] for t in plugs.orders()] == ["b"], "c's order withdrawn, b's kept"


def test_a_conflict_copy_whose_order_is_withdrawn_is_not_listed(hub, monkeypatch):
    """The replica that was to set its losing version aside went away before it did: the conflict copy nobody holds
    is neither listed nor agreed on (nobody could copy it from anywhere); its path is decided again."""
    referee, plugs = hub
    plugs.listing(["f.txt"])
    referee.decide()  # the same on every replica: agreed, nothing to do
    referee.ledger.commit(referee.space)
    plugs.report("a", [("f.txt", Observed("file", "a" * 64, 5, 2, "f:a"))])
    plugs.report("c", [("f.txt", Observed("file", "c" * 64, 5, 3, "f:c"))])
    referee.decide()
    referee.ledger.commit(referee.space)
    (loser, conflict) = next((t[1], a["dst"]) for t in plugs.orders() for a in t[3]["actions"]
                             if a["op"] == "conflict")
    assert referee.awaiting.conflict_count("docs") == 1, (plugs.actions(), referee.awaiting.conflicts)
    plugs.space.take((tuples.PLUG, loser, None))
    monkeypatch.setattr(referee_module, "ABSENT", 0.0)
    referee._refresh_plugs()
    referee.ledger.commit(referee.space)
    assert referee.awaiting.conflict_count("docs") == 0, "a conflict copy never made is not listed"
    assert referee.ledger.agreed["docs"][conflict].tombstone, "nor agreed on"
    assert "f.txt" in referee.dirty["docs"]
    assert not plugs.space.read_all((tuples.CONFLICT, None, None, None))


def test_a_conflict_copy_another_replica_still_makes_stays_listed(hub, monkeypatch):
    """Two replicas hold the losing version: one going away does not unlist the copy the other is making."""
    referee, plugs = hub
    plugs.listing(["f.txt"])
    referee.decide()
    referee.ledger.commit(referee.space)
    for service in ("a", "b"):
        plugs.report(service, [("f.txt", Observed("file", "a" * 64, 5, 2, "f:a"))])
    plugs.report("c", [("f.txt", Observed("file", "c" * 64, 5, 3, "f:c"))])
    referee.decide()
    referee.ledger.commit(referee.space)
    assert sorted(s for s, op, _ in plugs.actions() if op == "conflict") == ["a", "b"]
    monkeypatch.setattr(referee_module, "ABSENT", 0.0)
    for gone, listed in (("a", 1), ("b", 0)):
        plugs.space.take((tuples.PLUG, gone, None))
        referee._refresh_plugs()
        referee.ledger.commit(referee.space)
        assert referee.awaiting.conflict_count("docs") == listed, gone


def test_a_plug_not_started_yet_is_shown_starting_and_one_gone_unavailable(tmp_path):
    """Right after `onitu start` a plug's process may run before its plug announced itself: status says
    "starting", not a failure; a plug that was there and went away is "unavailable"."""
    hub = pretend_hub(tmp_path)
    referee, plugs = next(hub)
    try:
        plugs.space.take((tuples.PLUG, "c", None))
        fresh = Referee(referee.config, plugs.space)
        fresh._refresh_plugs()
        states = {s: row["state"] for s, row in fresh.commands.summary()["folders"]["docs"]["services"].items()}
        assert states == {"a": "listing", "b": "listing", "c": "starting"}
        referee._refresh_plugs()
        assert (referee.commands.summary()["folders"]["docs"]["services"]["c"]["state"]
                == "unavailable: its plug is not running")
    finally:
        next(hub, None)
