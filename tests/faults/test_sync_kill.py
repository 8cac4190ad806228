"""kill -9 the referee, a plug or the space primary at random moments while three replicas sync 1,000 files.

Replica ``a`` starts with 1,000 files (mostly 1-8 KiB, a few of 1-3 MiB so that transfers are in flight when
something dies) and ``b`` with a few of its own. While the hub syncs them, each round changes some files on random
replicas (creations, modifications, deletions, renames), waits a random moment and kills one process with SIGKILL.
Afterwards, with no manual step, every replica must be identical, byte for byte, and every file must hold the last
content written to it, at its path or, where the hub saw a genuine conflict, as a ``name.conflict-...`` copy of it.
Nothing may be truncated, and no staged ``.onitu-tmp-`` file may surface as a file of its own.

``ONITU_SOAK_ROUNDS=N`` runs N rounds instead of :data:`ROUNDS`; ``ONITU_SOAK_SEED`` replays a seed's choices (the
timing of a run is never replayed).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.sync.hub import Hub, tree

ROUNDS = int(os.environ.get("ONITU_SOAK_ROUNDS", "20"))
FILES = 1000
BIG = 12  # files of 1-3 MiB among them
FAST_CRASH = 5.0  # the harness's restart.fast_crash: a process killed younger than this counts as a fast crash
CONVERGE = 90.0  # seconds allowed for the final convergence (a loaded 2-core machine)
CONFLICT = re.compile(r"\.conflict-\d{8}-\d{6}-[^./]+?(?:-\d+)?(?=\.[^./]*$|$)")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str | None:
    try:
        return _sha(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def origin(path: str) -> str:
    """The path a conflict copy was named after (``path`` itself for anything else)."""
    return CONFLICT.sub("", path)


@dataclass
class Model:
    """What the test wrote: per path its last content (None once deleted or renamed away) and every content it had."""

    last: dict[str, str | None] = field(default_factory=dict)
    history: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sizes: dict[str, int] = field(default_factory=dict)  # sha256 -> size
    counter: int = 0
    done: Counter = field(default_factory=Counter)

    def fresh(self, rng: random.Random) -> str:
        self.counter += 1
        folder = rng.choice([f"d{rng.randrange(10)}", f"d{rng.randrange(10)}/sub{rng.randrange(3)}", ""])
        return f"{folder}/n{self.counter}.txt" if folder else f"n{self.counter}.txt"

    def alive(self) -> list[str]:
        return sorted(p for p, sha in self.last.items() if sha is not None)

    def write(self, root: Path, path: str, data: bytes) -> None:
        """Write in place, as people do (the plugs must not ship a half-written file)."""
        full = root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        sha = _sha(data)
        self.last[path] = sha
        self.history[path].add(sha)
        self.sizes[sha] = len(data)

    def rename(self, root: Path, src: str, dst: str) -> None:
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / src, root / dst)
        sha = self.last[src]
        assert sha is not None
        self.last[src] = None
        self.last[dst] = sha
        self.history[dst].add(sha)

    def delete(self, root: Path, path: str) -> None:
        (root / path).unlink()
        self.last[path] = None


def payload(rng: random.Random, big: bool = False) -> bytes:
    return rng.randbytes(rng.randint(1 << 20, 3 << 20) if big else rng.randint(1 << 10, 8 << 10))


def up_to_date(hub: Hub, model: Model, path: str, rng: random.Random) -> str | None:
    """A replica whose copy of ``path`` is the last one written: a change there is not a conflict."""
    names = list(hub.roots)
    rng.shuffle(names)
    return next((n for n in names if _file_sha(hub.roots[n] / path) == model.last[path]), None)


def mutate(hub: Hub, model: Model, rng: random.Random) -> None:
    """One round of changes on random replicas, each made where the file is up to date."""
    names = list(hub.roots)
    for _ in range(rng.randint(1, 5)):
        model.write(hub.roots[rng.choice(names)], model.fresh(rng), payload(rng))
        model.done["created"] += 1
    alive = model.alive()
    for kind, count in (("modified", rng.randint(1, 6)), ("renamed", rng.randint(0, 3)),
                        ("deleted", rng.randint(0, 3))):
        for path in rng.sample(alive, min(count, len(alive))):
            if model.last[path] is None:
                continue
            where = up_to_date(hub, model, path, rng)
            if where is None:
                continue  # not yet everywhere it was last changed: changing it elsewhere would be a conflict
            root = hub.roots[where]
            if kind == "modified":
                model.write(root, path, payload(rng, big=model.sizes[model.last[path]] > 1 << 20
                                                or rng.random() < 0.05))
            elif kind == "renamed":
                model.rename(root, path, model.fresh(rng))
            else:
                model.delete(root, path)
            model.done[kind] += 1


def killable(hub: Hub, rng: random.Random, fast: Counter) -> tuple[str, int] | None:
    """A random running victim (referee, a plug, the space primary), never one the watchdog would give up on."""
    status = hub.status()
    procs = {p["name"]: p for p in status.get("processes", [])}
    kinds = [["referee"], [f"plug-{n}" for n in hub.roots], [status.get("primary", "")]]
    rng.shuffle(kinds)
    for names in kinds:
        for name in rng.sample(names, len(names)):
            proc = procs.get(name)
            if proc is None or proc["state"] != "running" or not proc.get("pid"):
                continue
            young = (proc.get("uptime") or 0.0) < FAST_CRASH + 1.0  # status.json may lag a little
            if young and fast[name] >= 1:
                continue  # a second fast crash in a row is the most we allow (the third marks it failed)
            fast[name] = fast[name] + 1 if young else 0
            return name, int(proc["pid"])
    return None


def problems(found: dict[str, str], model: Model) -> list[str]:
    """What is wrong with a converged replica's tree, against what was written."""
    out = []
    written = set(model.sizes)
    files = {p: sha for p, sha in found.items() if sha != "dir"}
    by_origin: dict[str, set[str]] = defaultdict(set)
    for path, sha in files.items():
        if ".onitu-tmp-" in path or ".onitu-" in path:
            out.append(f"{path}: an internal name surfaced as a file")
        if sha not in written:
            out.append(f"{path}: content {sha[:12]} was never written (truncated or mixed)")
        by_origin[origin(path)].add(sha)
        if path != origin(path) and sha not in model.history.get(origin(path), ()):
            out.append(f"{path}: a conflict copy of {origin(path)} holding content it never had")
    for path, sha in model.last.items():
        if sha is None:
            if path in files and files[path] not in model.history[path]:
                out.append(f"{path}: deleted, and back with content it never had")
            continue
        if files.get(path) != sha and sha not in by_origin.get(path, ()):
            out.append(f"{path}: its last content {sha[:12]} is lost (found {files.get(path, 'nothing')[:12]})")
    for path in files:
        if origin(path) not in model.last:
            out.append(f"{path}: never written by anyone")
    return out


@pytest.fixture
def hub(tmp_path):
    run = Hub(tmp_path)
    yield run
    try:
        run.stop()
    finally:
        run.kill_everything()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_kill9_during_sync_of_1000_files(hub, tmp_path):
    seed = int(os.environ.get("ONITU_SOAK_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    model = Model()
    for root in hub.roots.values():
        root.mkdir(parents=True, exist_ok=True)
    big = set(rng.sample(range(FILES), BIG))
    for i in range(FILES):
        model.write(hub.roots["a"], f"d{i % 10}/f{i}.bin" if i % 7 else f"f{i}.bin", payload(rng, i in big))
    for i in range(30):
        model.write(hub.roots["b"], f"d{i % 10}/b{i}.bin", payload(rng))

    begin = time.monotonic()
    hub.start()
    fast: Counter = Counter()
    kills: Counter = Counter()
    for _ in range(ROUNDS):
        mutate(hub, model, rng)
        time.sleep(rng.uniform(0.3, 1.5))
        victim = killable(hub, rng, fast)
        if victim is not None:
            name, pid = victim
            try:
                os.kill(pid, signal.SIGKILL)
                kills[name if not name.startswith("space-") else "space primary"] += 1
            except ProcessLookupError:
                pass

    context = f"seed {seed}, kills {dict(kills)}, changes {dict(model.done)}"
    hub.wait(lambda s: s.get("mode") == "paired" and all(p["state"] == "running" for p in s.get("processes", [])),
             60, f"every process running again and the space paired ({context})")
    try:
        final = hub.wait_converged(CONVERGE, expect=lambda t: not problems(t, model))
    except AssertionError as exc:
        found = {name: problems(tree(root), model)[:10] for name, root in hub.roots.items()}
        raise AssertionError(f"{context}\nproblems per replica: {found}\n{exc}") from None
    time.sleep(2.0)  # nothing may move once converged
    assert hub.converged(), f"replicas diverged again after converging ({context})"
    again = tree(hub.roots["a"])
    assert again == final, f"the tree changed after converging ({context})"
    assert not problems(again, model), (context, problems(again, model)[:20])
    assert sum(kills.values()) >= ROUNDS // 2, f"too few kills ({context})"
    conflicts = sorted(p for p in again if origin(p) != p)
    staged = [p for root in hub.roots.values() for p in root.rglob(".onitu-tmp-*")]
    print(f"\n{context}; {len(again)} entries, {len(conflicts)} conflict copies, "
          f"{len(staged)} staged leftovers ({sum(p.stat().st_size == 0 for p in staged)} empty), "
          f"{time.monotonic() - begin:.0f} s")
