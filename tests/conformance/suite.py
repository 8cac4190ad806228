"""The driver conformance suite: what every backend must do, in the spirit of rclone's fstest.

A driver's test module subclasses :class:`DriverConformance` and provides a ``harness`` fixture returning a
:class:`Harness` for a fresh, initialised root. The suite checks, on every test, that nothing was written outside
the root. A case is skipped only for a capability the driver declares it lacks (``Driver.features``), and the skip
names that capability. Big files are kept small unless ``ONITU_CONFORMANCE_FULL=1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from onitu.sync.drivers.contract import (
    CHUNK,
    MARKER,
    Changed,
    ChangeEvent,
    Driver,
    DriverError,
    HashMismatch,
    NotFound,
    RootUnavailable,
    UnsafePath,
    WholeFile,
    is_under,
)
from onitu.sync.plug.orders import TRANSFERS

MIB = 1 << 20
FULL = os.environ.get("ONITU_CONFORMANCE_FULL") == "1"


def lacking(driver: Driver, capability: str, why: str) -> None:
    """Skip the test, visibly, because ``driver`` declares it lacks ``capability``."""
    pytest.skip(f"{driver.name} lacks the capability {capability}: {why}")


@dataclass
class Harness:
    """A driver under test and the out-of-band hooks the suite needs around it."""

    driver: Driver  # initialised and available
    uninitialised: Driver  # on a root that exists but was never initialised
    outside: Callable[[], set[str]]  # a snapshot of everything around (not under) the roots
    put: Callable[[str, bytes], None]  # create or overwrite a file behind the driver's back, as a user would
    remove: Callable[[str], None]
    rename: Callable[[str, str], None]
    break_root: Callable[[], None]  # make the root unreachable (moved away, unmounted, ...)
    repair_root: Callable[[], None]  # and bring it back


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes (so an offset error cannot go unnoticed)."""
    block = hashlib.sha256(f"{seed}".encode()).digest() * 2048
    data = bytearray()
    counter = 0
    while len(data) < size:
        data += hashlib.sha256(block[:64] + counter.to_bytes(8, "big")).digest() * 128
        counter += 1
    return bytes(data[:size])


def put(driver: Driver, path: str, data: bytes, piece: int = 64 * 1024):
    chunks = (data[i:i + piece] for i in range(0, len(data), piece))
    return driver.write(path, chunks, expected_sha256=sha(data))


def failing(*parts: bytes) -> Iterator[bytes]:
    """Chunks that end in a lost connection."""
    yield from parts
    raise ConnectionError("peer went away")


def listing(driver: Driver, prefix: str = "") -> dict[str, int | None]:
    """path -> size (None for a directory)."""
    return {s.path: None if s.is_dir else s.size for s in driver.list(prefix)}


class Events:
    """Collects watcher events; ``wait`` for one matching, within a deadline."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[ChangeEvent] = queue.SimpleQueue()
        self.seen: list[ChangeEvent] = []

    def __call__(self, event: ChangeEvent) -> None:
        self.queue.put(event)

    def wait(self, kind: str, path: str = "", dest: str | None = None, timeout: float = 5.0) -> ChangeEvent:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(event)
            if event.kind == kind and event.path == path and (dest is None or event.dest == dest):
                return event
        raise AssertionError(f"no {kind} {path} {dest or ''} within {timeout}s; seen: {self.seen}")

    def wait_move(self, driver: Driver, src: str, dst: str, timeout: float = 5.0) -> None:
        """A move, reported as one by a push watcher; a polling one may report a deletion and a creation."""
        if driver.features.watch == "push":
            self.wait("moved", src, dst, timeout=timeout)
            return
        deadline = time.monotonic() + timeout
        wanted = {("deleted", src), ("created", dst)}
        while wanted and time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):
                event = self.wait_any(deadline - time.monotonic())
                if event.kind == "moved" and (event.path, event.dest) == (src, dst):
                    return
                # (where directories are only implied, a directory emptied by the move may stay: its files go)
                if event.kind == "deleted" and is_under(event.path, src):
                    wanted.discard(("deleted", src))
                wanted.discard((event.kind, event.path))
        assert not wanted, f"no move of {src} to {dst} within {timeout}s; seen: {self.seen}"

    def wait_any(self, timeout: float) -> ChangeEvent:
        try:
            event = self.queue.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            raise AssertionError("no event") from None
        self.seen.append(event)
        return event


HOSTILE = ["..", "../x", "a/../../x", "a/..", "/abs", "/etc/passwd", "a\0b", "x" * 300, "é" * 128, "a//b", "a/./b",
           "", "a/", MARKER, "d/.onitu-tmp-0123", "a\\..\\b", "new\nline"]


class DriverConformance:
    """Every test a driver must pass. Subclasses provide the ``harness`` fixture."""

    @pytest.fixture(autouse=True)
    def _nothing_outside(self, harness: Harness) -> Iterator[None]:
        before = harness.outside()
        yield
        assert harness.outside() == before, "something was written outside the root"

    @pytest.fixture
    def driver(self, harness: Harness) -> Driver:
        return harness.driver

    # -- basics -------------------------------------------------------------------------------------------------

    def test_fresh_root_is_available_and_empty(self, driver: Driver) -> None:
        assert driver.available()
        assert listing(driver) == {}
        assert driver.stat("nothing") is None

    def test_uninitialised_root_is_unavailable_not_empty(self, harness: Harness) -> None:
        fresh = harness.uninitialised
        assert not fresh.available() and fresh.available().reason
        with pytest.raises(RootUnavailable):
            list(fresh.list())
        with pytest.raises(RootUnavailable):
            fresh.stat("x")
        fresh.initialise()
        assert fresh.available() and listing(fresh) == {}

    @pytest.mark.parametrize("size", [0, 1, 4095, CHUNK - 1, CHUNK, CHUNK + 1, 5 * MIB + 3])
    def test_write_then_read_back(self, driver: Driver, size: int) -> None:
        data = payload(size, seed=size)
        stat = put(driver, "file.bin", data, piece=100_003)
        assert (stat.path, stat.is_dir, stat.size) == ("file.bin", False, size)
        assert driver.stat("file.bin") == stat
        assert driver.read("file.bin") == data
        assert b"".join(driver.chunks("file.bin", size=65_536)) == data
        assert driver.checksum("file.bin") == sha(data)
        assert listing(driver) == {"file.bin": size}

    def test_ranged_reads(self, driver: Driver) -> None:
        data = payload(3 * MIB + 17)
        put(driver, "r.bin", data)
        for offset, length in [(0, 10), (1, 1), (MIB - 3, 7), (3 * MIB, 17), (3 * MIB, 1000), (len(data), 5)]:
            assert driver.read("r.bin", offset, length) == data[offset:offset + length]
        assert driver.read("r.bin", 2 * MIB) == data[2 * MIB:]
        assert b"".join(driver.chunks("r.bin", offset=MIB + 5)) == data[MIB + 5:]
        assert driver.read("r.bin", len(data) + 10, 5) == b""

    def test_deep_directories(self, driver: Driver) -> None:
        deep = "/".join(f"level{i}" for i in range(40))
        put(driver, f"{deep}/leaf.txt", b"deep")
        found = listing(driver)
        assert found[f"{deep}/leaf.txt"] == 4 and found["level0"] is None and len(found) == 41
        assert listing(driver, "level0/level1/level2") == {p: s for p, s in found.items()
                                                           if p.startswith("level0/level1/level2/")}

    def test_concurrent_writes_into_new_directories(self, driver: Driver) -> None:
        """Copies run TRANSFERS at a time: writes into nested directories none of them has made yet, each making
        the parents it lacks at the same moment as the others, all succeed (servers answer a second MKD or MKCOL
        of one directory with an error; wsgidav with a 500)."""
        files = {f"new/d{i % 6}/e{i % 2}/f{i:03}.bin": payload(512, i) for i in range(96)}
        with ThreadPoolExecutor(TRANSFERS) as pool:
            list(pool.map(lambda item: put(driver, *item), files.items()))
        found = listing(driver)
        assert {p: size for p, size in found.items() if size is not None} == {p: 512 for p in files}
        assert {driver.checksum(p) for p in ("new/d0/e0/f000.bin", "new/d5/e1/f095.bin")} == {
            sha(files["new/d0/e0/f000.bin"]), sha(files["new/d5/e1/f095.bin"])}

    def test_unicode_names_are_nfc(self, driver: Driver) -> None:
        names = ["café.txt", "日本語/ファイル.txt", "emoji 🎉.md", "Ωmega/ünïcödé"]
        for i, name in enumerate(names):
            put(driver, name, f"content {i}".encode())
        decomposed = unicodedata.normalize("NFD", "crème brûlée.txt")
        assert put(driver, decomposed, b"dessert").path == "crème brûlée.txt"
        found = listing(driver)
        assert all(unicodedata.is_normalized("NFC", p) for p in found)
        assert {*names, "crème brûlée.txt"} <= found.keys()
        assert driver.read(decomposed) == driver.read("crème brûlée.txt") == b"dessert"

    def test_checksum_and_fingerprint_follow_content(self, driver: Driver) -> None:
        first = put(driver, "f", b"one")
        time.sleep(0.01)
        second = put(driver, "f", b"two, longer")
        assert first.fingerprint != second.fingerprint
        assert driver.stat("f").fingerprint == second.fingerprint == driver.stat("f").fingerprint

    # -- verified, resumable writes ---------------------------------------------------------------------------

    def test_hash_mismatch_makes_nothing_visible(self, driver: Driver) -> None:
        with pytest.raises(HashMismatch):
            driver.write("new.txt", [b"actual"], expected_sha256=sha(b"expected"))
        assert driver.stat("new.txt") is None and listing(driver) == {} and driver.partial("new.txt") == 0
        put(driver, "old.txt", b"keep me")
        with pytest.raises(HashMismatch):
            driver.write("old.txt", [b"corrupt"], expected_sha256=sha(b"good"))
        assert driver.read("old.txt") == b"keep me" and listing(driver) == {"old.txt": 7}

    def test_write_many_makes_visible_only_what_verifies(self, driver: Driver) -> None:
        put(driver, "kept.txt", b"changed since the decision")
        put(driver, "old.txt", b"old")
        old = driver.stat("old.txt")
        files = [WholeFile("a.txt", b"first", sha(b"first")),
                 WholeFile("bad.txt", b"corrupted", sha(b"expected")),
                 WholeFile("kept.txt", b"stale", sha(b"stale"), replaces="not its fingerprint"),
                 WholeFile("new/dir/b.txt", b"", sha(b"")),
                 WholeFile("old.txt", b"replaced", sha(b"replaced"), replaces=old.fingerprint)]
        done = driver.write_many(files)
        assert [type(d) for d in done[1:3]] == [HashMismatch, Changed]
        assert [(d.path, d.size) for d in (done[0], done[3], done[4])] == [("a.txt", 5), ("new/dir/b.txt", 0),
                                                                          ("old.txt", 8)]
        assert driver.stat("a.txt") == done[0] and driver.read("old.txt") == b"replaced"
        assert driver.read("kept.txt") == b"changed since the decision"
        assert listing(driver) == {"a.txt": 5, "kept.txt": 26, "new": None, "new/dir": None, "new/dir/b.txt": 0,
                                   "old.txt": 8}
        assert driver.partial("bad.txt") == driver.partial("kept.txt") == 0

    def test_interrupted_write_resumes(self, driver: Driver) -> None:
        step = driver.features.resumable
        if not step:
            lacking(driver, "resumable", "an interrupted write starts again from scratch")
        piece = max(step, MIB)  # what the sender had sent, twice, when the connection broke
        data = payload(3 * piece + 5)

        with pytest.raises(ConnectionError):
            driver.write("big.bin", failing(data[:piece], data[piece:2 * piece]), expected_sha256=sha(data))
        assert driver.stat("big.bin") is None and listing(driver) == {}
        staged = driver.partial("big.bin")
        assert staged == 2 * piece
        with pytest.raises(DriverError):
            driver.write("big.bin", [data[staged + 1:]], expected_sha256=sha(data), resume_from=staged + 1)
        resumed_from = piece + (7 if step == 1 else 0)  # from before the end of what was staged is fine too
        stat = driver.write("big.bin", [data[resumed_from:]], expected_sha256=sha(data), resume_from=resumed_from)
        assert stat.size == len(data) and driver.read("big.bin") == data
        assert driver.partial("big.bin") == 0 and listing(driver) == {"big.bin": len(data)}

    def test_resume_with_wrong_data_is_refused_and_discard(self, driver: Driver) -> None:
        step = driver.features.resumable
        if not step:
            lacking(driver, "resumable", "nothing is kept of an interrupted write")
        half = 50_000 if step == 1 else step
        data = payload(2 * half)
        with pytest.raises(ConnectionError):
            driver.write("f", failing(data[:half]), expected_sha256=sha(data))
        assert driver.partial("f") == half
        with pytest.raises(HashMismatch):
            driver.write("f", [b"x" * half], expected_sha256=sha(data), resume_from=half)
        assert driver.partial("f") == 0 and driver.stat("f") is None
        with pytest.raises(ConnectionError):
            driver.write("g", failing(data[:10]), expected_sha256=sha(data))
        driver.discard("g")
        assert driver.partial("g") == 0 and listing(driver) == {}

    def test_preconditions_refuse_stale_decisions(self, driver: Driver) -> None:
        first = put(driver, "f", b"v1")
        with pytest.raises(Changed):
            driver.write("f", [b"v2"], expected_sha256=sha(b"v2"), replaces=None)
        with pytest.raises(Changed):
            driver.write("f", [b"v2"], expected_sha256=sha(b"v2"), replaces="not-the-fingerprint")
        assert driver.read("f") == b"v1" and listing(driver) == {"f": 2}
        # a rewrite of the same size within the mtime's precision may keep a (size, mtime) fingerprint
        time.sleep(driver.features.mtime_precision if driver.features.mtime_precision >= 0.5 else 0)
        second = driver.write("f", [b"v2"], expected_sha256=sha(b"v2"), replaces=first.fingerprint)
        with pytest.raises(Changed):
            driver.delete("f", replaces=first.fingerprint)
        with pytest.raises(Changed):
            driver.move("f", "g", replaces=first.fingerprint)
        assert driver.read("f") == b"v2"
        driver.move("f", "g", replaces=second.fingerprint)
        driver.delete("g", replaces=driver.stat("g").fingerprint)
        assert listing(driver) == {}

    # -- namespace operations ---------------------------------------------------------------------------------

    def test_move_file_and_directory(self, driver: Driver) -> None:
        put(driver, "a.txt", b"a")
        put(driver, "dir/sub/b.txt", b"bb")
        moved = driver.move("a.txt", "elsewhere/renamed.txt")
        assert moved.path == "elsewhere/renamed.txt" and moved.size == 1
        driver.move("dir", "moved")
        assert listing(driver) == {"elsewhere": None, "elsewhere/renamed.txt": 1, "moved": None, "moved/sub": None,
                                   "moved/sub/b.txt": 2}
        assert driver.read("moved/sub/b.txt") == b"bb"
        put(driver, "c.txt", b"c")
        with pytest.raises(DriverError):
            driver.move("c.txt", "elsewhere/renamed.txt")  # never replaces
        with pytest.raises(DriverError):
            driver.move("moved", "moved/sub/inside")
        with pytest.raises(NotFound):
            driver.move("missing", "x")
        assert driver.read("elsewhere/renamed.txt") == b"a" and driver.read("c.txt") == b"c"

    def test_delete(self, driver: Driver) -> None:
        put(driver, "d/f", b"x")
        with pytest.raises(DriverError):
            driver.delete("d")  # not empty
        driver.delete("d/f")
        assert listing(driver) == {"d": None}
        driver.delete("d")
        assert listing(driver) == {}
        with pytest.raises(NotFound):
            driver.delete("d")

    def test_mkdir(self, driver: Driver) -> None:
        stat = driver.mkdir("x/y/z")
        assert stat.is_dir and stat.path == "x/y/z"
        assert driver.mkdir("x/y/z").is_dir  # again: fine
        put(driver, "file", b"f")
        with pytest.raises(DriverError):
            driver.mkdir("file")
        with pytest.raises(DriverError):
            put(driver, "x/y", b"a directory is in the way")
        assert listing(driver) == {"x": None, "x/y": None, "x/y/z": None, "file": 1}

    def test_reading_errors(self, driver: Driver) -> None:
        driver.mkdir("dir")
        with pytest.raises(NotFound):
            driver.read("missing")
        with pytest.raises(DriverError):
            driver.read("dir")

    # -- hostile names ----------------------------------------------------------------------------------------

    @pytest.mark.parametrize("name", HOSTILE, ids=repr)
    def test_hostile_names_are_refused(self, driver: Driver, name: str) -> None:
        put(driver, "a/inside.txt", b"i")
        operations: list[Callable[[], object]] = [
            lambda: put(driver, name, b"evil"), lambda: driver.read(name), lambda: driver.stat(name),
            lambda: driver.delete(name), lambda: driver.move("a/inside.txt", name), lambda: driver.move(name, "b"),
            lambda: driver.mkdir(name), lambda: driver.partial(name),
        ]
        for operation in operations:
            with pytest.raises(UnsafePath):
                operation()
        assert listing(driver) == {"a": None, "a/inside.txt": 1}

    def test_hostile_prefix_is_refused(self, driver: Driver) -> None:
        for prefix in ["..", "/", "../..", "a/../.."]:
            with pytest.raises(UnsafePath):
                list(driver.list(prefix))

    def test_unsyncable_names_found_on_the_root_are_skipped(self, harness: Harness, driver: Driver) -> None:
        harness.put("fine.txt", b"ok")
        harness.put("back\\slash.txt", b"cannot be synced faithfully")
        with contextlib.suppress(Exception):  # (a server may refuse to hold such a name at all)
            harness.put("new\nline.txt", b"nor can this")
        assert listing(driver) == {"fine.txt": 2}

    def test_names_differing_only_in_case(self, driver: Driver) -> None:
        put(driver, "Case.txt", b"upper")
        try:
            put(driver, "case.txt", b"lower")
        except DriverError:  # refused: the backend cannot hold both; the first must be intact
            assert driver.read("Case.txt") == b"upper" and listing(driver) == {"Case.txt": 5}
            return
        assert driver.read("Case.txt") == b"upper" and driver.read("case.txt") == b"lower"
        assert listing(driver) == {"Case.txt": 5, "case.txt": 5}

    # -- availability -----------------------------------------------------------------------------------------

    def test_broken_root_is_unavailable_never_empty(self, harness: Harness, driver: Driver) -> None:
        put(driver, "f", b"x")
        harness.break_root()
        try:
            assert not driver.available()
            for operation in (lambda: list(driver.list()), lambda: driver.stat("f"), lambda: driver.read("f"),
                              lambda: put(driver, "g", b"g"), lambda: driver.delete("f")):
                with pytest.raises(RootUnavailable):
                    operation()
        finally:
            harness.repair_root()
        assert driver.available() and listing(driver) == {"f": 1}

    # -- change detection -------------------------------------------------------------------------------------

    def test_change_detection(self, harness: Harness, driver: Driver) -> None:
        events = Events()
        put(driver, "before.txt", b"made before watching")
        driver.watch(events, scan_interval=3600)
        try:
            events.wait("rescan")
            harness.put("new.txt", b"hello")
            events.wait("created", "new.txt")
            harness.put("new.txt", b"hello again")
            events.wait("modified", "new.txt")
            harness.rename("new.txt", "renamed.txt")
            events.wait_move(driver, "new.txt", "renamed.txt")
            harness.put("sub/deeper/file.txt", b"x")
            events.wait("created", "sub/deeper/file.txt")
            harness.rename("sub", "moved-dir")
            events.wait_move(driver, "sub", "moved-dir")
            harness.remove("renamed.txt")
            events.wait("deleted", "renamed.txt")
            put(driver, "written.txt", b"through the driver")  # may be reported, or not: its writer knows it
            harness.put("after.txt", b"made by someone else")
            events.wait("created", "after.txt")
            assert not any(".onitu-" in e.path or ".onitu-" in (e.dest or "") for e in events.seen)
            polled = driver.features.watch == "poll"  # (a polling watcher sees a move as deletions and creations)
            moves = {"new.txt", "sub", "sub/deeper", "sub/deeper/file.txt"} if polled else set()
            assert not any(e.kind == "deleted" and e.path not in {"renamed.txt", *moves} for e in events.seen), \
                events.seen
        finally:
            driver.close()

    def test_watch_reports_unavailable_and_rescans_when_back(self, harness: Harness, driver: Driver) -> None:
        events = Events()
        driver.watch(events, scan_interval=3600)
        try:
            events.wait("rescan")
            harness.break_root()
            try:
                events.wait("unavailable")
            finally:
                harness.repair_root()
            events.wait("rescan")
            assert not any(e.kind == "deleted" for e in events.seen)
        finally:
            driver.close()

    def test_half_written_files_are_reported_once_settled(self, harness: Harness, driver: Driver) -> None:
        events = Events()
        driver.watch(events, scan_interval=3600)
        try:
            events.wait("rescan")
            data = b""
            for i in range(5):
                data += payload(10_000, seed=i)
                harness.put("growing.bin", data)
                time.sleep(driver.settle / 4)
            event = events.wait("created", "growing.bin", timeout=5 + driver.settle * 4)
            assert event.kind == "created" and driver.stat("growing.bin").size == len(data)
            assert [e for e in events.seen if e.path == "growing.bin"] == [event]  # one report, once complete
        finally:
            driver.close()


def local_outside(base: str, *roots: str) -> Callable[[], set[str]]:
    """A snapshot function for drivers whose roots are local directories: everything under ``base`` but them."""

    def snapshot() -> set[str]:
        found = set()
        for directory, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if os.path.join(directory, d) not in roots]
            found.update(os.path.relpath(os.path.join(directory, f), base) for f in files + dirs)
        return found

    return snapshot
