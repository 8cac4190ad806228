"""Random operations on random replicas while the hub runs (a hypothesis state machine), then what the hub promises.

One hub (services a, b, c, all local) serves the whole module; every example works in a fresh directory ``exN`` of
the folder. Rules create, overwrite and append to files, delete and rename files, make, rename and delete
directories, and create the same path on two replicas at once (some file paths are directories elsewhere, so a file
and a directory meet at one path), with pauses of random length between them: some
operations race with the sync of earlier ones, some find everything settled. Some pauses and the end of every
example wait until the hub is quiet, then check:

- the replicas are identical, byte for byte, directories included;
- every content nobody discarded is still there, at its path or elsewhere (a conflict copy, a renamed file): a file
  version is *discarded* only by a user operation that removed it from the replica it was on (overwrite, append,
  delete, deletion of a directory above it). That is what "modification beats deletion" and "a conflict keeps both
  versions" add up to: a deletion or a change made on one replica never silently destroys a version another replica
  wrote that the deleting or changing side had not seen;
- nothing else is there: every file holds a content some operation wrote (no half-written or mixed files), and every
  name is a name the rules use or a conflict copy of one (``name.conflict-YYYYMMDD-HHMMSS-service[-n].ext``).

What a user operation discards is read from the disk, atomically with the operation, not predicted: overwrites and
appends read the old content through the same open file they then write; deletions rename the file or directory
into a trash outside the replica (for the watcher, a deletion) and read what arrived there; renames use
``RENAME_NOREPLACE``, so they never clobber a file the hub just brought. Every content is unique (a tag per write),
so "present" is a set of hashes. An overwrite whose open file the hub replaced before the write landed (the plug
renames its verified copies into place) wrote into an unlinked file: the user's write is then lost for everyone, so
it is not counted as written, nor is the old content counted as discarded by it.

Held deletions are a separate safety net (a replica deleting more than half of what it held waits for ``onitu
approve``); rules here legitimately delete most of a small example directory at once, so the hub runs with the
threshold at 1.0 (never held).

Knobs: ``ONITU_STATEFUL_EXAMPLES`` (default 10), ``ONITU_STATEFUL_STEPS`` (default 14), ``ONITU_STATEFUL_SEED``
(default random; printed, and every failure message carries it and the steps run), ``ONITU_STATEFUL_SHRINK=1`` to
let hypothesis shrink a failure (slow: every example costs seconds, and timing makes replays flaky),
``ONITU_STATEFUL_VERBOSE=1`` (with ``-s``) to print every example's steps.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import random
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from onitu.space import connect
from onitu.sync import tuples
from onitu.sync.decide.metadata import FileMeta
from onitu.sync.state.ledger import Ledger
from tests.sync.hub import Hub

EXAMPLES = int(os.environ.get("ONITU_STATEFUL_EXAMPLES") or 10)
STEPS = int(os.environ.get("ONITU_STATEFUL_STEPS") or 14)
SEED = int(os.environ.get("ONITU_STATEFUL_SEED") or random.randrange(1 << 32))
SHRINK = os.environ.get("ONITU_STATEFUL_SHRINK") == "1"
VERBOSE = os.environ.get("ONITU_STATEFUL_VERBOSE") == "1"
QUIET = 1.5  # seconds the replicas must stay identical with the referee idle before they count as converged
TIMEOUT = 60.0

NAMES = ("f1.txt", "f2.txt", "g")
DIRS = ("d1", "d2", "d4", "d1/d3", "d2/d5")
# "d4" and "d1/d3" are directories elsewhere: a file and a directory then meet at one path
FILES = (*(f"{d}/{n}" if d else n for d in ("", "d1", "d2", "d1/d3") for n in NAMES), "d4", "d1/d3")
COMPONENTS = {part for path in FILES + DIRS for part in path.split("/")}
CONFLICT = re.compile(r"\.conflict-\d{8}-\d{6}-[abc](?:-\d+)?")

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def rename_noreplace(src: Path, dst: Path) -> None:
    """rename(2) that fails with EEXIST instead of replacing ``dst`` (a user never clobbers what sync brought)."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(src))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """``{path: content, or None for a directory}`` below ``root``, Onitu's own names left out."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".onitu-")]
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            found[os.path.normpath(os.path.join(rel, d))] = None
        for f in filenames:
            if not f.startswith(".onitu-"):
                try:
                    found[os.path.normpath(os.path.join(rel, f))] = Path(dirpath, f).read_bytes()
                except FileNotFoundError:  # replaced or removed while we walked: look again later
                    found[os.path.normpath(os.path.join(rel, f))] = b"<vanished>"
    return found


def show(content: bytes | None) -> str:
    return "dir" if content is None else repr(content[:40]) + ("..." if len(content) > 40 else "")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stateful")
    h = Hub(tmp, sync="deletion_threshold: 1.0")
    try:
        h.start()
        space = connect(None, data_dir=h.data)
        try:
            yield h, space, tmp / "trash"
        finally:
            space.close()
    finally:
        try:
            h.stop()
        finally:
            h.kill_everything()


_examples = itertools.count(1)


class Replicas(RuleBasedStateMachine):
    """Operations on the replicas of one example directory, and what must hold once the hub is quiet."""

    def __init__(self, hub: Hub, space, trash: Path) -> None:
        super().__init__()
        self.hub, self.space = hub, space
        self.ex = f"ex{next(_examples)}"
        self.trash = trash / self.ex
        self.trash.mkdir(parents=True)
        self.roots = {name: root / self.ex for name, root in hub.roots.items()}
        self.live: dict[str, bytes] = {}  # sha -> content: written, and not discarded since
        self.written: dict[str, bytes] = {}  # sha -> every content ever written
        self.log: list[str] = []
        self._tags = itertools.count(1)
        self._trashed = itertools.count(1)

    # -- helpers --------------------------------------------------------------------------------------------------

    def note(self, line: str) -> None:
        self.log.append(f"{time.monotonic():.3f} {line}")

    def content(self, body: bytes, prefix: bytes = b"") -> bytes:
        return prefix + f"<{self.ex}.{next(self._tags)}>".encode() + body

    def discard(self, data: bytes, why: str) -> None:
        digest = sha(data)
        if self.live.pop(digest, None) is not None:
            self.note(f"   discards {show(data)} ({why})")

    def entries(self, service: str, kind: str) -> list[str]:
        """The files or directories (``kind``) of the example directory on ``service`` now, sorted."""
        found = [p for p, c in snapshot(self.roots[service]).items() if (c is None) == (kind == "dir")]
        return sorted(found)

    def pick(self, service: str, kind: str, n: int) -> str | None:
        found = self.entries(service, kind)
        return found[n % len(found)] if found else None

    def write(self, service: str, path: str, body: bytes, *, append: bool = False) -> None:
        """Write ``path`` on ``service`` as a user would (in place), reading what the write replaces through the
        same open file."""
        full = self.roots[service] / path
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, created = os.open(full, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), True
            except FileExistsError:
                fd, created = os.open(full, os.O_RDWR | os.O_NOFOLLOW), False
        except OSError as exc:  # a file where a directory is needed, a directory at path, ...
            self.note(f"{service}: write {path}: skipped ({exc.strerror})")
            return
        try:
            old = b"" if created else _read_all(fd)
            data = self.content(body, old if append else b"")
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            linked = os.fstat(fd).st_nlink > 0
        except OSError as exc:
            self.note(f"{service}: write {path}: skipped ({exc.strerror})")
            return
        finally:
            os.close(fd)
        verb = "append to" if append else "create" if created else "overwrite"
        self.note(f"{service}: {verb} {path} = {show(data)}" + ("" if linked else " (LOST: the hub replaced the "
                                                                                    "file before the write landed)"))
        if not linked:
            return
        self.written[sha(data)] = self.live[sha(data)] = data
        if not created:
            self.discard(old, f"{verb} on {service}")

    def remove(self, service: str, path: str) -> None:
        """Delete ``path`` (file or directory) on ``service`` by moving it to the trash, and discard what moved."""
        dest = self.trash / f"{next(self._trashed)}-{service}"
        try:
            os.rename(self.roots[service] / path, dest)
        except OSError as exc:
            self.note(f"{service}: delete {path}: skipped ({exc.strerror})")
            return
        self.note(f"{service}: delete {path}")
        for content in snapshot(dest).values() if dest.is_dir() else [dest.read_bytes()]:
            if content is not None:
                self.discard(content, f"deleted on {service}")

    def rename(self, service: str, src: str, dst: str) -> None:
        root = self.roots[service]
        try:
            (root / dst).parent.mkdir(parents=True, exist_ok=True)
            rename_noreplace(root / src, root / dst)
        except OSError as exc:
            self.note(f"{service}: rename {src} -> {dst}: skipped ({exc.strerror})")
            return
        self.note(f"{service}: rename {src} -> {dst}")

    # -- rules ----------------------------------------------------------------------------------------------------

    @rule(service=st.sampled_from("abc"), path=st.sampled_from(FILES), body=st.binary(max_size=16))
    def write_path(self, service: str, path: str, body: bytes) -> None:
        self.write(service, path, body)

    @rule(service=st.sampled_from("abc"), n=st.integers(0, 255), body=st.binary(max_size=16))
    def overwrite_file(self, service: str, n: int, body: bytes) -> None:
        path = self.pick(service, "file", n)
        if path is not None:
            self.write(service, path, body)

    @rule(service=st.sampled_from("abc"), n=st.integers(0, 255), body=st.binary(max_size=8))
    def append_file(self, service: str, n: int, body: bytes) -> None:
        path = self.pick(service, "file", n)
        if path is not None:
            self.write(service, path, body, append=True)

    @rule(service=st.sampled_from("abc"), n=st.integers(0, 255))
    def delete_file(self, service: str, n: int) -> None:
        path = self.pick(service, "file", n)
        if path is not None:
            self.remove(service, path)

    @rule(service=st.sampled_from("abc"), n=st.integers(0, 255), dst=st.sampled_from(FILES))
    def rename_file(self, service: str, n: int, dst: str) -> None:
        path = self.pick(service, "file", n)
        if path is not None and path != dst:
            self.rename(service, path, dst)

    @rule(service=st.sampled_from("abc"), path=st.sampled_from(DIRS))
    def make_dir(self, service: str, path: str) -> None:
        try:
            (self.roots[service] / path).mkdir(parents=True)
            self.note(f"{service}: mkdir {path}")
        except OSError as exc:
            self.note(f"{service}: mkdir {path}: skipped ({exc.strerror})")

    @rule(service=st.sampled_from("abc"), n=st.integers(0, 255), dst=st.sampled_from(DIRS))
    def rename_dir(self, service: str, n: int, dst: str) -> None:
        path = self.pick(service, "dir", n)
        if path is not None and not (dst == path or dst.startswith(path + "/")):
            self.rename(service, path, dst)

    @rule(service=st.sampled_from("abc"), n=st.integers(0, 255), whole=st.booleans())
    def delete_dir(self, service: str, n: int, whole: bool) -> None:
        """Delete a directory at once (moved to the trash), or file by file then its directories bottom up."""
        path = self.pick(service, "dir", n)
        if path is None:
            return
        if whole:
            self.remove(service, path)
            return
        below = [p for p in self.entries(service, "file") if p.startswith(path + "/")]
        for file in below:
            self.remove(service, file)
        for d in sorted((p for p in self.entries(service, "dir") if p == path or p.startswith(path + "/")),
                        key=lambda p: -p.count("/")):
            try:
                os.rmdir(self.roots[service] / d)
                self.note(f"{service}: rmdir {d}")
            except OSError as exc:
                self.note(f"{service}: rmdir {d}: skipped ({exc.strerror})")

    @rule(first=st.sampled_from("abc"), other=st.integers(1, 2), path=st.sampled_from(FILES),
          bodies=st.tuples(st.binary(max_size=16), st.binary(max_size=16)))
    def write_on_two(self, first: str, other: int, path: str, bodies: tuple[bytes, bytes]) -> None:
        """The same path written on two replicas at (nearly) the same moment."""
        second = "abc"[("abc".index(first) + other) % 3]
        self.write(first, path, bodies[0])
        self.write(second, path, bodies[1])

    @rule(seconds=st.sampled_from([0.0, 0.05, 0.15, 0.4, 1.0, None]))
    def pause(self, seconds: float | None) -> None:
        """Wait a little (some operations then find the earlier ones synced), or (None) until everything settled,
        and check."""
        self.note(f"pause {seconds}" if seconds is not None else "sync")
        if seconds is None:
            self.check()
        else:
            time.sleep(seconds)

    def teardown(self) -> None:
        self.note("end of example")
        self.check()
        if VERBOSE:
            print("\n".join([self.ex, *self.log]))

    # -- checks ---------------------------------------------------------------------------------------------------

    def idle(self) -> bool:
        """The referee's last published status: no order under way, nothing undecided or held."""
        found = self.space.read_all((tuples.STATUS, None))
        if not found:
            return False
        folder = found[0][1]["folders"]["docs"]
        return folder["undecided"] == 0 and all(row["files"] == 0 and row["held"] == 0 and row["state"] == "in sync"
                                                for row in folder["services"].values())

    def quiet(self) -> tuple[bool, dict[str, dict[str, bytes | None]]]:
        """Wait until the replicas stayed identical, with the referee idle, for :data:`QUIET` seconds; whether they
        did within :data:`TIMEOUT`, and what they hold."""
        deadline = time.monotonic() + TIMEOUT
        stable_since, last = 0.0, None
        while True:
            views = {name: snapshot(root) for name, root in self.roots.items()}
            same = all(v == views["a"] for v in views.values())
            state = (same and self.idle(), views)
            if state != last:
                stable_since, last = time.monotonic(), state
            elif state[0] and time.monotonic() - stable_since >= QUIET:
                return True, views
            if time.monotonic() > deadline:
                return False, views
            time.sleep(0.1)

    def check(self) -> None:
        quiet, views = self.quiet()
        problems = [] if quiet else [f"the hub did not settle within {TIMEOUT:.0f} s (replicas identical: "
                                     f"{all(v == views['a'] for v in views.values())}, referee idle: {self.idle()})"]
        final = views["a"]
        for name, view in views.items():
            if view != final:
                diff = sorted(p for p in view.keys() | final.keys() if view.get(p, 0) != final.get(p, 0))
                problems.append(f"{name} differs from a at {diff}")
        present = {sha(c) for v in views.values() for c in v.values() if c is not None}
        for digest, data in self.live.items():
            if digest not in present:
                problems.append(f"lost: {show(data)} (nobody discarded it)")
        for name, view in views.items():
            for path, data in view.items():
                if data is not None and sha(data) not in self.written:
                    problems.append(f"{name}: {path} holds {show(data)}, which nobody wrote")
                if any(CONFLICT.sub("", part) not in COMPONENTS for part in path.split("/")):
                    problems.append(f"{name}: unexpected name {path}")
        if problems:
            trees = "\n".join(f"  {name}: " + ", ".join(f"{p}={show(c)}" for p, c in sorted(view.items()))
                              for name, view in views.items())
            report = (f"{self.ex} (ONITU_STATEFUL_SEED={SEED}):\n" + "\n".join(problems)
                      + "\nsteps:\n  " + "\n  ".join(self.log)
                      + f"\nreplicas:\n{trees}\nthe hub's ledger:\n{self.ledger()}\n{self.hub.agent_logs()}")
            # Printed as well: when hypothesis replays a failing example and timing makes it pass, it may report
            # only its own "flaky" error; the captured output then still shows what failed.
            print(f"FAILED CHECK {report}", flush=True)
            raise AssertionError(report)
        self.note(f"   checked: {len(final)} entries, {len(self.live)} live contents")

    def ledger(self) -> str:
        """The agreed version of every path of the example, and what each service holds (for failure messages)."""
        def short(meta: FileMeta) -> str:
            what = "tombstone" if meta.tombstone else "dir" if meta.kind == "dir" else \
                show(self.written.get(meta.sha256 or "", (meta.sha256 or "").encode()))
            return f"{what} {meta.version.to_wire()}"
        ledger = Ledger()
        ledger.load(self.space)
        rows: dict[str, list[str]] = {}
        prefix = self.ex + "/"
        for path, meta in ledger.agreed["docs"].items():
            if path.startswith(prefix):
                rows.setdefault(path[len(prefix):], []).insert(0, f"agreed {short(meta)}")
        for service in ("a", "b", "c"):
            for path, meta in ledger.held[service, "docs"].items():
                if path.startswith(prefix):
                    rows.setdefault(path[len(prefix):], []).append(f"{service} holds {short(meta)}")
        return "\n".join(f"  {path}: " + "; ".join(row) for path, row in sorted(rows.items()))


def _read_all(fd: int) -> bytes:
    parts, offset = [], 0
    while data := os.pread(fd, 1 << 16, offset):
        parts.append(data)
        offset += len(data)
    return b"".join(parts)


@pytest.mark.timeout(300 + 60 * EXAMPLES)
def test_random_operations_converge_and_lose_nothing(hub):
    h, space, trash = hub
    print(f"ONITU_STATEFUL_SEED={SEED} ONITU_STATEFUL_EXAMPLES={EXAMPLES} ONITU_STATEFUL_STEPS={STEPS}")

    @seed(SEED)
    def machine() -> Replicas:
        return Replicas(h, space, trash)

    phases = (Phase.explicit, Phase.reuse, Phase.generate) + ((Phase.shrink,) if SHRINK else ())
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None, phases=phases,
        suppress_health_check=list(HealthCheck), report_multiple_bugs=False))
