"""kill -9 the referee, a plug or the space primary at random moments while three replicas sync 1,000 files.

Replica ``a`` starts with 1,000 files (mostly 1-8 KiB, a few of 1-3 MiB so that transfers are in flight when
something dies) and ``b`` with a few of its own. While the hub syncs them, each round changes some files on random
replicas (creations, modifications, deletions, renames of files and of whole directories), each where the file is up
to date, waits a random moment and kills one process with SIGKILL. Afterwards, with no manual step, every replica
must be identical, byte for byte, and every file must hold the last content written to it, at its path or, where the
hub saw a genuine conflict, as a ``name.conflict-...`` copy of it. (A change made to a file whose arrival the hub had
not recorded yet, because the plug that wrote it was killed before reporting it, is such a conflict.) Nothing may be
truncated, and no staged ``.onitu-tmp-`` file may surface as a file of its own.

``ONITU_SOAK_ROUNDS=N`` runs N rounds instead of :data:`ROUNDS`; ``ONITU_SOAK_SEED`` replays a seed's choices (the
timing of a run is never replayed).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from onitu.space import connect
from onitu.sync import tuples
from onitu.sync.decide.plan import paths_of
from onitu.sync.state.ledger import Ledger
from tests.sync.hub import Hub, running_hub, tree, wait_settled

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
    journal: list[str] = field(default_factory=list)  # what was done where, for a post-mortem

    def note(self, root: Path, what: str, path: str, sha: str | None = None) -> None:
        self.journal.append(f"{time.strftime('%H:%M:%S')} {root.name} {what} {path} {(sha or '')[:12]}")

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
        self.note(root, "write", path, sha)
        self.last[path] = sha
        self.history[path].add(sha)
        self.sizes[sha] = len(data)

    def rename(self, root: Path, src: str, dst: str) -> None:
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / src, root / dst)
        sha = self.last[src]
        assert sha is not None
        self.note(root, f"rename {src} ->", dst, sha)
        self.last[src] = None
        self.last[dst] = sha
        self.history[dst].add(sha)

    def move_dir(self, root: Path, src: str, dst: str) -> None:
        """Rename a directory and everything in it."""
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / src, root / dst)
        self.note(root, "rename dir", f"{src} -> {dst}")
        for path in [p for p in self.alive() if p.startswith(src + "/")]:
            sha = self.last[path]
            assert sha is not None
            self.last[path] = None
            self.last[dst + path[len(src):]] = sha
            self.history[dst + path[len(src):]].add(sha)

    def delete_dir(self, root: Path, path: str) -> None:
        shutil.rmtree(root / path)
        self.note(root, "delete dir", path)
        for below in [p for p in self.alive() if p.startswith(path + "/")]:
            self.last[below] = None

    def delete(self, root: Path, path: str) -> None:
        (root / path).unlink()
        self.note(root, "delete", path)
        self.last[path] = None


def payload(rng: random.Random, big: bool = False) -> bytes:
    return rng.randbytes(rng.randint(1 << 20, 3 << 20) if big else rng.randint(1 << 10, 8 << 10))


def up_to_date(hub: Hub, model: Model, path: str, rng: random.Random) -> str | None:
    """A replica whose copy of ``path`` is the last one written: a change there is not a conflict."""
    names = list(hub.roots)
    rng.shuffle(names)
    return next((n for n in names if _file_sha(hub.roots[n] / path) == model.last[path]), None)


def whole_dir(hub: Hub, model: Model, rng: random.Random, small: bool) -> tuple[Path, str] | None:
    """A replica and one of its directories holding exactly the last version of every file the test put there."""
    dirs = sorted({parent for p in model.alive() if (parent := os.path.dirname(p))})
    if small:
        dirs = [d for d in dirs if "/" in d or d.startswith("m")]
    if not dirs:
        return None
    folder = rng.choice(dirs)
    inside = {p for p in model.alive() if p.startswith(folder + "/")}
    for name in rng.sample(list(hub.roots), len(hub.roots)):
        root = hub.roots[name]
        found = {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root / folder) for f in files}
        if found == inside and all(_file_sha(root / p) == model.last[p] for p in inside):
            return root, folder
    return None


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
    if rng.random() < 0.3:
        edit_on_arrival(hub, model, rng)
    if rng.random() < 0.25 and (found := whole_dir(hub, model, rng, small=False)):
        root, folder = found
        model.counter += 1
        model.move_dir(root, folder, f"{os.path.dirname(folder)}/m{model.counter}".lstrip("/"))
        model.done["directories renamed"] += 1
    if rng.random() < 0.1 and (found := whole_dir(hub, model, rng, small=True)):
        model.delete_dir(*found)
        model.done["directories deleted"] += 1


def edit_on_arrival(hub: Hub, model: Model, rng: random.Random) -> None:
    """Write a file on one replica, watch another for its arrival and change it there the moment it lands: the
    copy's last steps (its directory made durable, its observation taken) race with the edit, which must still
    reach every replica (issue 20: the plug took the edit for its own write and settled on the copied content)."""
    origin_name, target_name = rng.sample(list(hub.roots), 2)
    path = model.fresh(rng)
    model.write(hub.roots[origin_name], path, payload(rng))
    target, expected = hub.roots[target_name] / path, model.last[path]
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if _file_sha(target) == expected:
            model.write(hub.roots[target_name], path, payload(rng))
            model.done["edited on arrival"] += 1
            return
        time.sleep(0.0005)


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


def trees(hub: Hub) -> dict[str, dict[str, str]] | None:
    """Every replica's tree; None if a file moved while they were read."""
    try:
        return {name: tree(root) for name, root in hub.roots.items()}
    except OSError:
        return None


def told(model: Model, wrong: dict[str, list[str]]) -> list[str]:
    """The journal's lines about the files (and directory renames) behind ``wrong``: CI keeps no tmp_path."""
    names = {os.path.basename(line.split(":")[0]) for lines in wrong.values() for line in lines}
    return [line for line in model.journal if "rename dir" in line or any(n in line.split() or f"/{n}" in line
                                                                           for n in names)][-40:]


def hub_view(hub: Hub, wrong: dict[str, list[str]]) -> list[str]:
    """For each path found wrong, whether the hub was still working on it (orders under way, deletions held for
    approval) or had settled on a version (agreed, and which replicas it believes hold what): the first thing a
    reader of a failure needs to know."""
    paths = sorted({origin(line.split(": ")[0]) for lines in wrong.values() for line in lines})
    if not paths:
        return []
    try:
        ledger = Ledger()
        with connect(data_dir=hub.data, connect_timeout=10) as space:
            ledger.load(space)
            orders = space.read_all((tuples.ORDER, None, None, None))
            pending = space.read_all((tuples.PENDING, None, None, None))
    except Exception as exc:  # a post-mortem must not hide the failure it explains
        return [f"(the hub's view could not be read: {exc})"]
    out = []
    for path in paths[:10]:
        meta = ledger.agreed["docs"].get(path)
        agreed = "nothing" if meta is None else "deleted" if meta.tombstone else (meta.sha256 or "dir")[:12]
        holds = {name: ((h.sha256 or "dir")[:12] if (h := ledger.held[name, "docs"].get(path)) else "nothing")
                 for name in hub.roots}
        under_way = [f"{service} order {oid}: {type(action).__name__}"
                     for _, service, oid, body in orders for action in map(tuples.action_from_wire, body["actions"])
                     if path in paths_of(action)]
        held = [service for _, folder, service, info in pending if path in info.get("paths", ())]
        state = (f"still working on it: {under_way + [f'held for approval on {s}' for s in held]}"
                 if under_way or held else "settled")
        out.append(f"{path}: {state}; agreed {agreed}; the hub believes the replicas hold {holds}")
    return out


def converged(hub: Hub, model: Model, timeout: float, context: str) -> dict[str, str]:
    """The replicas' common tree once they are identical and hold everything written (within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = trees(hub) or {}
        first = next(iter(found.values()), None)
        if first is not None and all(t == first for t in found.values()) and not problems(first, model):
            return first
        if time.monotonic() > deadline:
            wrong = {name: problems(t, model)[:10] for name, t in found.items()}
            differ = {name: sorted(set(t.items()) ^ set(first.items()))[:10] for name, t in found.items()} \
                if first is not None else {}
            raise AssertionError(f"no convergence ({context})\nproblems per replica: {wrong}\n"
                                 f"differences with the first replica: {differ}\n"
                                 f"what the test did there: {told(model, wrong)}\n"
                                 f"what the hub makes of it: {hub_view(hub, wrong)}\n{hub.agent_logs()}")
        time.sleep(0.2)


def ledger_problems(hub: Hub, found: dict[str, str]) -> list[str]:
    """Where what the hub agreed and what it says each replica holds differ from the replicas' common tree."""
    ledger = Ledger()
    with connect(data_dir=hub.data, connect_timeout=30) as space:
        ledger.load(space)
    out = []
    for meta in ledger.agreed["docs"].values():
        if not meta.tombstone and found.get(meta.path) != (meta.sha256 or "dir"):
            out.append(f"{meta.path}: agreed {meta.kind} {(meta.sha256 or '')[:12]}, found "
                       f"{found.get(meta.path, 'nothing')[:12]}")
    for name in hub.roots:
        holds = {path: meta.sha256 or "dir" for path, meta in ledger.held[name, "docs"].items()}
        out += [f"{path}: {name} holds {holds.get(path, 'nothing')[:12]}, has {sha[:12]}"
                for path, sha in found.items() if holds.get(path) != sha]
        out += [f"{path}: {name} holds {sha[:12]}, has nothing" for path, sha in holds.items() if path not in found]
    return out


@pytest.fixture
def hub(tmp_path):
    yield from running_hub(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(300 + 5 * ROUNDS)
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
    model.journal.clear()  # the initial files are not worth a line each
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
                model.journal.append(f"{time.strftime('%H:%M:%S')} kill {name} {pid}")
            except ProcessLookupError:
                pass

    context = f"seed {seed}, kills {dict(kills)}, changes {dict(model.done)}"
    (tmp_path / "journal.txt").write_text("\n".join(model.journal) + "\n")
    hub.wait(lambda s: s.get("mode") == "paired" and all(p["state"] == "running" for p in s.get("processes", [])),
             60, f"every process running again and the space paired ({context})")
    final = converged(hub, model, CONVERGE, context)
    time.sleep(2.0)  # nothing may move once converged
    assert converged(hub, model, 0.0, context) == final, f"the replicas changed after converging ({context})"
    assert not ledger_problems(hub, final), (context, ledger_problems(hub, final)[:20])
    assert sum(kills.values()) >= ROUNDS // 2, f"too few kills ({context})"
    conflicts = sorted(p for p in final if origin(p) != p)
    staged = [p for root in hub.roots.values() for p in root.rglob(".onitu-tmp-*")]
    print(f"\n{context}; {len(final)} entries, {len(conflicts)} conflict copies, "
          f"{len(staged)} staged leftovers ({sum(p.stat().st_size == 0 for p in staged)} empty), "
          f"{time.monotonic() - begin:.0f} s")


def test_agents_ride_out_a_space_restart_that_forgot_their_events(hub):
    """A primary killed while alone restarts in place, without the events its clients' notifies were following:
    the referee and the plugs must read what they missed from the space, not crash (each crash is a restart and,
    repeated, leaves a service marked failed)."""
    hub.roots["a"].mkdir(parents=True)
    (hub.roots["a"] / "before.txt").write_text("before\n")
    hub.start()
    wait_settled(hub, lambda t: "before.txt" in t)
    agents = {name: hub.pid(name) for name in ("referee", "plug-a", "plug-b", "plug-c")}
    first = hub.status()["primary"]
    os.kill(hub.primary_pid(), signal.SIGKILL)  # the secondary is promoted and goes on alone...
    hub.wait(lambda s: s.get("primary") != first and hub.process(s["primary"])["state"] == "running", 30,
             "the promotion")
    os.kill(hub.primary_pid(), signal.SIGKILL)  # ...so this one is restarted in place
    hub.wait(lambda s: s.get("mode") == "paired" and all(p["state"] == "running" for p in s.get("processes", [])),
             60, "the pair again")
    (hub.roots["b"] / "after.txt").write_text("after\n")
    (hub.roots["a"] / "before.txt").unlink()
    wait_settled(hub, lambda t: "after.txt" in t and "before.txt" not in t)
    assert {name: hub.pid(name) for name in agents} == agents, hub.agent_logs()


def test_a_file_changed_just_after_it_arrived_is_no_conflict_while_another_copy_waits(hub):
    """A replica that received a version holds it from the moment its plug reports the copy done, even while the
    same version is still on its way to a replica whose plug was just killed: a change made there then is an
    ordinary change, not a conflict (the order used to carry the version agreed before it, and the replica counted
    as holding that older one until every copy of the path was done)."""
    names = list(hub.roots)
    for name in names:
        hub.roots[name].mkdir(parents=True)
        (hub.roots[name] / f"from-{name}.txt").write_text("first\n")
    hub.start()
    wait_settled(hub, lambda t: len(t) == 3)
    for writer, editor, victim in zip(names, names[1:] + names[:1], names[2:] + names[:2], strict=True):
        path = f"from-{writer}.txt"
        os.kill(hub.pid(f"plug-{victim}"), signal.SIGKILL)  # its copy waits for the restart
        (hub.roots[writer] / path).write_text(f"changed on {writer}\n")
        deadline = time.monotonic() + 30
        while (hub.roots[editor] / path).read_text() != f"changed on {writer}\n":
            assert time.monotonic() < deadline, f"{path} never reached {editor}"
            time.sleep(0.01)
        time.sleep(0.3)
        (hub.roots[editor] / path).write_text(f"then on {editor}\n")
    expected = {f"from-{w}.txt": _sha(f"then on {e}\n".encode()) for w, e in zip(names, names[1:] + names[:1],
                                                                                strict=True)}
    final = wait_settled(hub, lambda t: all(t.get(p) == sha for p, sha in expected.items()) or any(
        origin(p) != p for p in t), 60)
    assert final == expected, f"{final}\n{hub.agent_logs()}"
