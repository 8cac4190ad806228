"""onitu.gcpolicy: after a slow full collection, what survived is out of the collector's sight, so the next full
collection walks only what was made since (a plug holding millions of objects was killed as hung in the middle of
one, its stacks said "Garbage-collecting"); garbage is still freed, young cycles included; a fast collection (a
small heap) freezes nothing. (Which collections count as slow is set here, not timed.) A load collects nothing
until it ends, then freezes what it built."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_full_collection_no_longer_walks_what_survived_the_last_one() -> None:
    script = textwrap.dedent("""
        import gc, weakref
        from onitu import gcpolicy

        gcpolicy.for_big_tables()
        gcpolicy.for_big_tables()  # once is enough: no second callback
        assert gc.callbacks.count(gcpolicy._freeze_survivors) == 1
        table = [[i] for i in range(500_000)]  # a plug's table: objects the collector tracks
        gcpolicy.SLOW = 1e9  # every collection fast: nothing frozen
        gc.collect()
        assert gc.get_freeze_count() == 0
        gcpolicy.SLOW = 0.0  # every collection slow
        gc.collect()
        assert gc.get_freeze_count() >= 500_000, gc.get_freeze_count()
        assert len(gc.get_objects(generation=2)) < 1_000  # what a full collection still walks

        class Node:
            pass

        young = Node()
        young.cycle = young
        gone = weakref.ref(young)
        del young
        gc.collect()
        assert gone() is None  # a cycle made since is still collected
        del table[:250_000]  # frozen objects are freed as soon as nothing refers to them
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_sync_processes_collect_that_way() -> None:
    script = textwrap.dedent("""
        import gc, sys
        from onitu.sync import process
        from onitu import gcpolicy
        sys.argv = ["x"]
        try:
            process.serve("t", "t", None, ["--config", "/nonexistent/onitu.yaml"])
        except BaseException:
            pass
        print(gcpolicy._freeze_survivors in gc.callbacks, gc.get_threshold() == gcpolicy.THRESHOLDS)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True"], out.stderr


def test_a_load_is_not_interrupted_by_collections_and_what_it_built_is_frozen() -> None:
    script = textwrap.dedent("""
        import gc
        from onitu import gcpolicy

        gcpolicy.for_big_tables()
        collections = []
        gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
        with gcpolicy.loading():
            assert not gc.isenabled()
            table = [[i] for i in range(300_000)]  # 30 young collections' worth, under the policy alone
            with gcpolicy.loading():
                pass
            assert not gc.isenabled()  # a nested load does not end the outer one
        assert collections == [], collections
        assert gc.isenabled()
        assert gc.get_freeze_count() >= 300_000, gc.get_freeze_count()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
