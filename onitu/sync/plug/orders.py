"""How a plug carries out the orders addressed to it.

An order holds up to 64 actions. They are carried out (copies in a pool, everything else in order, never two on
the same path at once), then the order is taken together with its result in one atomic batch: a plug killed
half-way finds the order again when it restarts and carries it out again, and an action that finds its work
already done succeeds. Every action names the content the referee based it on: the plug checks that this is
what it last reported there, and has the driver check that the entry still has the fingerprint it had then.
Contents come from the other plugs' chunk servers (:mod:`onitu.sync.plug.transfer`), never through the space, or,
from a local service of the same hub, straight from its root (:mod:`onitu.sync.plug.direct`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from onitu.chunks import TransferError
from onitu.config import Config
from onitu.space.client import SpaceClient
from onitu.space.errors import EventsLost, Refused, SpaceError
from onitu.sync import tuples
from onitu.sync.decide.plan import (
    TREE,
    Action,
    Copy,
    Delete,
    KeepConflict,
    Mkdir,
    Move,
    Observed,
    paths_of,
    service_of,
    tree_content_id,
)
from onitu.sync.drivers.contract import (
    CHUNK,
    CaseCollision,
    Changed,
    ChangeEvent,
    Driver,
    DriverError,
    Stat,
    UnsafePath,
    WholeFile,
    ancestors,
    is_under,
    safe_path,
)
from onitu.sync.plug import direct
from onitu.sync.plug.apart import SetApart
from onitu.sync.plug.reports import OrderRun, Reporter
from onitu.sync.plug.scanner import Scanner
from onitu.sync.plug.transfer import MANY, fetch, fetch_many

log = logging.getLogger(__name__)

TRANSFERS = 8  # copies carried out at once
SOURCES_TTL = 1.0  # seconds the other plugs' tuples are reused before they are read again
SMALL = CHUNK // 4  # files of at most this many bytes are copied in batches: fetched together, made durable together
BATCH_BYTES = 4 * CHUNK  # bytes of one batch at most


@dataclass(eq=False)
class Batch:
    """Small copies of one order gathered to be carried out together (no two on overlapping paths: neither the same
    file twice nor a file where another copy needs a directory; files side by side in a directory go together)."""

    order: OrderRun
    numbers: list[int] = field(default_factory=list)  # the actions' numbers in the order
    size: int = 0
    files: set[str] = field(default_factory=set)  # the copies' paths, case-folded
    directories: set[str] = field(default_factory=set)  # the directories above them, case-folded

    def takes(self, copy: Copy) -> bool:
        """Whether ``copy`` can join (else the batch is handed over first)."""
        key = copy.path.casefold()
        return (len(self.numbers) < MANY and self.size + copy.size <= BATCH_BYTES
                and key not in self.files and key not in self.directories
                and not any(a in self.files for a in ancestors(key)))

    def add(self, n: int, copy: Copy) -> None:
        key = copy.path.casefold()
        self.numbers.append(n)
        self.size += copy.size
        self.files.add(key)
        self.directories.update(ancestors(key))

    def clear(self) -> None:
        self.numbers, self.size = [], 0
        self.files.clear()
        self.directories.clear()


@dataclass(slots=True)
class Outcome:
    """What a copy made in a batch came to: what it wrote (None: it was there already), or why it failed."""

    written: Observed | None = None
    error: Exception | None = None

    def get(self) -> Observed | None:
        if self.error is not None:
            raise self.error
        return self.written


class Running:
    """The copies under way, by path: finding those an order must wait for takes time in the depth of its path,
    not in the number of copies (thousands are queued at once when a large tree arrives)."""

    def __init__(self) -> None:
        self.futures: dict[str, Future] = {}
        self.below: dict[str, int] = {}  # directory -> copies under way below it
        self.finished: deque[tuple[str, Future]] = deque()  # appended by the pool's threads

    def add(self, path: str, future: Future) -> None:
        self._drop(path)
        self.futures[path] = future
        for parent in ancestors(path):
            self.below[parent] = self.below.get(parent, 0) + 1
        future.add_done_callback(lambda f, path=path: self.finished.append((path, f)))

    def prune(self) -> None:
        """Forget the copies that are done."""
        while self.finished:
            path, future = self.finished.popleft()
            if self.futures.get(path) is future:
                self._drop(path)

    def _drop(self, path: str) -> None:
        if self.futures.pop(path, None) is None:
            return
        for parent in ancestors(path):
            self.below[parent] -= 1
            if not self.below[parent]:
                del self.below[parent]

    def overlapping(self, key: str) -> list[Future]:
        """The copies at ``key``, above it or below it."""
        if not key or key in self.below:
            return [f for p, f in self.futures.items() if is_under(p, key) or is_under(key, p)]
        return [f for p in (key, *ancestors(key)) if (f := self.futures.get(p)) is not None]


class Started:
    """The ids of the orders started and not yet seen taken: an order is carried out once, though it can come both
    from the reading of what waits in the space and from the notify stream (written between the two).

    An id leaves when the stream shows the order taken (the plug's result took it). Its write event came before
    that take in the stream, and a later reading cannot find it, so it cannot come back: the set holds the orders
    under way, not every order ever seen.
    """

    def __init__(self) -> None:
        self.ids: set[Any] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def fresh(self, oid: Any) -> bool:
        """Whether order ``oid`` is seen for the first time (it is then counted as started)."""
        if oid in self.ids:
            return False
        self.ids.add(oid)
        return True

    def taken(self, oid: Any) -> None:
        """The stream showed order ``oid`` taken."""
        self.ids.discard(oid)

    def resync(self, waiting: Iterable[Any]) -> None:
        """After events were lost (take events among them): keep the ids of the orders still ``waiting`` in the
        space. The others were taken; they were written before the new stream began, so it will not bring them."""
        self.ids.intersection_update(waiting)


class OrderTaker:
    """Takes the orders addressed to one service and carries them out (:meth:`run`, in a thread of its own)."""

    def __init__(self, config: Config, service: str, space: SpaceClient, driver: Driver, scanner: Scanner,
                 reporter: Reporter, events: Callable[[ChangeEvent], None], stop: threading.Event) -> None:
        self.config, self.service, self.space, self.driver, self.scanner = config, service, space, driver, scanner
        self.reporter, self.events, self._stop = reporter, events, stop
        self.pool = ThreadPoolExecutor(TRANSFERS, thread_name_prefix=f"onitu-copy-{service}")
        self.direct = direct.DirectReads(config)  # the roots of local sources, read here without their plugs
        self.progress: dict[str, list[int]] = {}  # path -> [bytes done, size], transfers under way
        self._plugs: tuple[float, list[tuple]] = (0.0, [])  # when read, the plug tuples
        self.apart = SetApart(service, reporter)
        self.started = Started()

    def close(self) -> None:
        """Give up the copies not started."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    def run(self) -> None:
        """Carry out orders as they come: copies in a pool, everything else in order, each after the copies
        addressed to the same path are done."""
        pattern = (re.compile(r"^sync\.(order|rescan)$"), self.service, None, None)
        while not self.reporter.listed.wait(0.2):
            if self._stop.is_set():
                return
        stream = self._subscribe(pattern)
        running = Running()
        backlog = self.space.read_all(pattern)
        while not self._stop.is_set():
            for tup in sorted(backlog, key=lambda t: (t[0] != tuples.RESCAN, t[2])):
                if tup[0] == tuples.RESCAN:
                    with contextlib.suppress(SpaceError):
                        self.space.take(tup, timeout=0)
                        self.events(ChangeEvent("rescan"))
                elif self.started.fresh(tup[2]):
                    self.start(tup, running)
            backlog = []
            try:
                event = stream.next_open(0.5)
                if event.kind == "write":
                    backlog.append(event.tuple)
                elif event.kind == "take" and event.tuple[0] == tuples.ORDER:
                    self.started.taken(event.tuple[2])
            except TimeoutError:
                pass
            except EventsLost:  # the space restarted and cannot replay them: what was missed is still there
                log.info("%s: the order stream lost events; reading the orders waiting in the space", self.service)
                with contextlib.suppress(SpaceError):
                    stream.close()
                stream = self._subscribe(pattern)
                backlog = self.space.read_all(pattern)
                self.started.resync(t[2] for t in backlog if t[0] == tuples.ORDER)
            running.prune()

    def _subscribe(self, pattern: tuple) -> Any:
        """The stream of the orders' writes and takes; of their writes only through a majordomo of an earlier
        version, which refuses takes (then the ids of the orders started are kept, as they were then)."""
        try:
            return self.space.notify(("write", "take"), pattern)
        except Refused as exc:
            log.info("%s: following the orders' writes only (%s)", self.service, exc)
            return self.space.notify("write", pattern)

    def start(self, tup: tuple, running: Running) -> None:
        """Carry out the order ``tup`` (copies in the pool, after those under way in ``running`` on the same paths)."""
        _, _, oid, body = tup
        try:
            if not isinstance(body, dict) or not isinstance(body.get("folder"), str):
                raise ValueError("an order body must be a mapping with a folder")
            actions = [tuples.action_from_wire(a) for a in body.get("actions") or ()]
            metas = body.get("metas")  # for the referee (it reads them back with the result): not looked at here
            if not actions or not isinstance(metas, list) or len(metas) != len(actions):
                raise ValueError("an order needs actions, and as many metas")
            if body["folder"] not in self.reporter.known or any(service_of(a) != self.service for a in actions):
                raise ValueError(f"order for folder {body['folder']!r:.60} or service not served here")
        except (ValueError, TypeError) as exc:
            log.warning("%s: dropping a malformed order %r: %s", self.service, oid, exc)
            with contextlib.suppress(SpaceError):
                self.space.take(tup, timeout=0)
            return
        order = OrderRun(tup, body["folder"], actions)
        small = Batch(order)
        for n, action in enumerate(actions):
            # Paths case-folded: on a replica that ignores case, "A.txt" and "a.txt" are one file, and two copies
            # at once would both find it free and the second would replace the first.
            if isinstance(action, Copy) and action.size <= SMALL:  # copied with the small files next to it
                if not small.takes(action):
                    self._submit(small, running)
                for future in running.overlapping(action.path.casefold()):
                    future.result()
                small.add(n, action)
                continue
            self._submit(small, running)
            for future in running.overlapping(paths_of(action)[0].casefold()):
                future.result()  # an action never overtakes an earlier one on the same paths
            if isinstance(action, Copy):
                running.add(action.path.casefold(), self.pool.submit(self._carry_out, order, n))
            else:
                self._carry_out(order, n)
        self._submit(small, running)

    def _submit(self, batch: Batch, running: Running) -> None:
        """Hand the small copies gathered in ``batch`` to the pool, as one task, and start a new batch."""
        if batch.numbers:
            numbers = list(batch.numbers)
            future = self.pool.submit(self._carry_out_small, batch.order, numbers)
            for n in numbers:
                running.add(batch.order.actions[n].path.casefold(), future)
        batch.clear()

    def _carry_out_small(self, order: OrderRun, numbers: list[int]) -> None:
        """Carry out copies of small files together; those the batch could not fetch are copied alone."""
        copies = [order.actions[n] for n in numbers]
        try:
            outcomes = self._copy_small(order.folder, copies)
        except Exception as exc:  # the batch as a whole: each copy is tried alone, and gets its own result
            log.info("%s: order %s: %d small copies go one by one: %s", self.service, order.tup[2], len(copies), exc)
            outcomes = [None] * len(copies)
        for n, outcome in zip(numbers, outcomes, strict=True):
            self._carry_out(order, n, outcome)

    def _carry_out(self, order: OrderRun, n: int, copied: Outcome | None = None) -> None:
        """Carry out action ``n`` of ``order`` (a copy already made in a batch: ``copied``); the order's result is
        sent once its last action is done."""
        folder, action = order.folder, order.actions[n]
        try:
            written: Observed | None = None
            if isinstance(action, Copy):
                written = self._copy(folder, action) if copied is None else copied.get()
                touched = [action.path]
            else:
                touched = self._execute(folder, action)
            result: dict[str, Any] = {"ok": True, "error": ""}
            for path in touched:  # a write refused before is possible now (the planted link is gone, say)
                self.driver.skipped.discard(self.scanner.where(folder, path))
        except Exception as exc:  # whatever went wrong, the order must get its result
            if not isinstance(exc, DriverError | TransferError | OSError):
                log.exception("%s: order %s: %s", self.service, order.tup[2], action)
            log.info("%s: order %s failed: %s", self.service, order.tup[2], exc)
            touched = list(paths_of(action))
            result = {"ok": False, "error": str(exc)[:2000]}
            if isinstance(exc, UnsafePath):  # refused for good until someone changes the replica: shown in status
                self.driver.skipped.add(exc.path, f"refused: {exc.problem}", refused=True)
        self.reporter.carried_out(order, n, touched, written, result)

    def _execute(self, folder: str, action: Action) -> list[str]:
        """Carry out one order other than a copy; the paths it touched (relative to the folder)."""
        at = self.scanner.where
        if isinstance(action, Mkdir):
            try:
                self.driver.mkdir(at(folder, action.path))
            except CaseCollision as exc:
                conflict = self._set_apart(folder, action.path, exc, None)
                raise self.driver.error(CaseCollision, exc.path, f"{exc.problem}; kept beside it as "
                                                                 f"{at(folder, conflict)}") from exc
            return [action.path]
        if isinstance(action, Delete):
            current = self.driver.stat(at(folder, action.path))
            if current is not None:
                precondition = self._precondition(folder, action.path, action.replaces)
                self.driver.delete(at(folder, action.path), replaces=precondition)
            return [action.path]
        assert isinstance(action, Move | KeepConflict)
        src, dst = (action.src, action.dst) if isinstance(action, Move) else (action.path, action.conflict)
        if self.driver.stat(at(folder, src)) is not None or self.driver.stat(at(folder, dst)) is None:
            precondition = self._precondition(folder, src, action.replaces)
            self.driver.move(at(folder, src), at(folder, dst), replaces=precondition)
        return [src, dst]

    def _tree_precondition(self, folder: str, path: str, content_id: str) -> str:
        """The driver's precondition for moving the directory ``path`` whole: its fingerprint, if this plug last
        reported exactly the subtree the referee decided on (``content_id``, see tree_content_id) and the driver
        lists nothing else below it now (a file made there and not reported yet). Otherwise the order is stale
        (:class:`Changed`)."""
        reported = self.reporter.reported_tree(folder, path)
        tree = {p[len(path) + 1:]: obs.content for p, obs in reported.items()}  # the directory itself at ''
        where = self.scanner.where(folder, path)
        if path not in reported or tree_content_id(tree) != content_id:
            raise self.driver.error(Changed, where, "changed since the hub decided to move it (what it holds was "
                                                    "reported otherwise since)")
        listed = {(stat.path, stat.fingerprint) for stat in self.driver.list(where)}
        expected = {(self.scanner.where(folder, p), obs.fingerprint) for p, obs in reported.items() if p != path}
        if listed != expected:
            unseen = min(listed ^ expected)[0]
            raise self.driver.error(Changed, where, f"holds what the hub has not seen yet ({unseen}); not moved")
        return reported[path].fingerprint

    def _precondition(self, folder: str, path: str, content_id: str | None) -> str | None:
        """The driver's precondition for an order decided on ``content_id`` (the content the referee saw at ``path``,
        see Observed.content_id): the fingerprint of that content as this plug last reported it. If it reported
        something else since, the order is stale (:class:`Changed`); so is one about a file changed and not reported
        yet (the driver finds another fingerprint)."""
        if content_id is None:
            return None
        if content_id.startswith(TREE):
            return self._tree_precondition(folder, path, content_id)
        known = self.reporter.reported(folder, path)
        if known is None or known.content_id != content_id:
            raise self.driver.error(Changed, self.scanner.where(folder, path),
                                    f"changed since the hub decided (expected {content_id[:16]}, last reported "
                                    f"{known.content_id[:16] if known else 'nothing'})")
        return known.fingerprint

    def _copy_small(self, folder: str, copies: list[Copy]) -> list[Outcome | None]:
        """Copy small files with one request per source and one durability step for them all; for each, its
        outcome, or None when it must be copied alone (its source cannot send many at once, or failed to read it:
        alone, it tries the other sources and its error names the file)."""
        outcomes: list[Outcome | None] = [None] * len(copies)
        by_source: dict[str, tuple[dict[str, Any], list[int]]] = {}
        for i, copy in enumerate(copies):
            current = self.reporter.reported(folder, copy.path)
            if current is not None and current.sha256 == copy.sha256:
                outcomes[i] = Outcome()  # already there
                continue
            sources = self._sources(copy.sources)
            if sources and (sources[0]["endpoint"] or self.direct.reader(sources[0], folder)):
                by_source.setdefault(sources[0]["service"], (sources[0], []))[1].append(i)
        files, placed = [], []
        for name, (source, numbers) in by_source.items():
            paths = [self._source_path(source, folder, copies[i]) for i in numbers]
            reader = self.direct.reader(source, folder)
            try:
                got = direct.many(reader, paths) if reader else \
                    fetch_many(source, name, paths, lambda source=source: self._still_serving(source))
            except TransferError as exc:
                log.debug("%s: %d small files from %s go one by one: %s", self.service, len(numbers), name, exc)
                continue
            for i, data in zip(numbers, got, strict=True):
                if isinstance(data, bytes):
                    copy = copies[i]
                    try:
                        replaces = self._precondition(folder, copy.path, copy.replaces)
                    except DriverError as exc:
                        outcomes[i] = Outcome(error=exc)
                        continue
                    files.append(WholeFile(self.scanner.where(folder, copy.path), data, copy.sha256, replaces))
                    placed.append(i)
        for i, written in zip(placed, self.driver.write_many(files) if files else [], strict=True):
            if isinstance(written, CaseCollision):
                continue  # copied alone, which sets its content apart as a conflict copy
            if isinstance(written, DriverError):
                outcomes[i] = Outcome(error=written)
            else:
                outcomes[i] = Outcome(self._remembered(written, copies[i].sha256))
        return outcomes

    def _remembered(self, written: Stat, sha256: str) -> Observed:
        """What a copy wrote, its hash cached (it need not be read again to be reported)."""
        self.scanner.remember(written, sha256)
        return Observed("file", sha256, written.size, written.mtime_ns, written.fingerprint)

    def _copy(self, folder: str, action: Copy) -> Observed | None:
        """Carry out a copy; what it wrote (None: it was there already)."""
        try:
            return self._copy_to(folder, action)
        except CaseCollision as exc:
            conflict = self._set_apart(folder, action.path, exc, action)
            raise self.driver.error(CaseCollision, exc.path, f"{exc.problem}; its content is kept beside it as "
                                                             f"{self.scanner.where(folder, conflict)}") from exc

    def _set_apart(self, folder: str, path: str, exc: CaseCollision, action: Copy | None) -> str:
        """The replica ignores case and holds a name that differs only in case from ``path`` or a directory above
        it (``exc.path``): the content (of ``action``; a directory if None) lands beside that entry as a conflict
        copy (:mod:`.apart`), instead of nowhere. The order itself still fails: the hub must not think this replica
        holds ``path``."""
        located = self.scanner.locate(exc.path)
        if located is None or located[0] != folder:  # the folder's own directory clashes: nowhere to go
            raise exc
        conflict = self.apart.target(folder, path, located[1], action.sha256 if action else None)
        if action is None:
            self.driver.mkdir(self.scanner.where(folder, conflict))
            wrote = True
        else:  # (nothing to do if it is there: the hub retries the copy now and then)
            wrote = self._copy_to(folder, replace(action, path=conflict, source_path=action.source_path or path,
                                                  replaces=None)) is not None
        self.driver.skipped.set_aside(self.scanner.where(folder, conflict), self.scanner.where(folder, path))
        if wrote:
            log.warning("%s: %s: %s (the replica ignores case): kept as %s", self.service, path, exc.problem,
                        conflict)
        return conflict

    def _copy_to(self, folder: str, action: Copy) -> Observed | None:
        """Carry out a copy as the action says."""
        where = self.scanner.where(folder, action.path)
        # as last reported (the first full listing precedes every order): asking the driver would cost a round trip
        # per file on a remote service; a change not reported yet makes the write's precondition fail instead
        current = self.reporter.reported(folder, action.path)
        if current is not None and current.sha256 == action.sha256:
            return None  # already there (a repeated order, or the same content arrived otherwise)
        sources = self._sources(action.sources)
        failure: Exception | None = None if sources else TransferError(
            f"{self.service}: {action.path}: no live source among {', '.join(action.sources)}")
        for source, reader in [(s, way) for s in sources for way in self.direct.ways(s, folder)]:
            # a file of one chunk arrives whole or not at all: nothing of it can be staged to resume from
            offset = self.driver.partial(where) if action.size > CHUNK else 0
            self.progress[where] = [offset, action.size]

            def advance(n: int, where: str = where) -> None:
                self.progress[where][0] += n
            path = self._source_path(source, folder, action)
            chunks = direct.chunks(reader, path, offset, advance) if reader else \
                fetch(source, source["service"], path, offset, action.size, advance,
                      lambda source=source: self._still_serving(source))
            try:
                written = self.driver.write(where, chunks, expected_sha256=action.sha256, resume_from=offset,
                                            replaces=self._precondition(folder, action.path, action.replaces))
                return self._remembered(written, action.sha256)
            except TransferError as exc:  # this source failed: keep what arrived, try the next one
                failure = exc
                self._plugs = (0.0, [])  # and read the plug tuples again next time (it may have restarted)
            except DriverError as exc:
                if offset and "sha256" in str(exc):
                    self.driver.discard(where)  # the staged prefix was of another version
                raise
            finally:
                self.progress.pop(where, None)
        if not self.driver.partial(where):  # nothing arrived, now or in a try interrupted by a kill:
            self.driver.discard(where)  # no empty staging file is left behind (its path may never be copied again)
        raise failure or TransferError(f"{self.service}: {action.path}: no source could send it")

    def _source_path(self, source: dict[str, Any], folder: str, action: Copy) -> str:
        """The path of the file on the source's side (its folders may live elsewhere under its root)."""
        path = action.source_path or action.path
        top = source["folders"].get(folder, "")
        return f"{top}/{path}" if top else path

    def _still_serving(self, source: dict[str, Any]) -> bool:
        """Whether the plug ``source`` describes still runs and serves where it did: its session-leased tuple is
        there, naming the same chunk server (an agent's plug keeps its id when the majordomo that relays it
        restarts, but its chunks then come through another endpoint) (True while the space cannot tell: a failover
        is not a dead source)."""
        try:
            found = self.space.read_all((tuples.PLUG, source["service"], None))
        except SpaceError:
            return True
        return any(isinstance(t[2], dict) and t[2].get("id") == source.get("id")
                   and t[2].get("endpoint") == source.get("endpoint") for t in found)

    def _sources(self, names: Iterable[str]) -> list[dict[str, Any]]:
        read, plugs = self._plugs
        if time.monotonic() - read > SOURCES_TTL:  # a source found gone is skipped by fetch, then re-read here
            plugs = self.space.read_all((tuples.PLUG, None, None))
            self._plugs = (time.monotonic(), plugs)
        found = []
        for name in names:
            for tup in (t for t in plugs if t[1] == name):
                info = tup[2]
                if not isinstance(info, dict) or not info.get("available"):
                    continue
                folders = info.get("folders")
                if isinstance(folders, dict) and all(isinstance(v, str) for v in folders.values()):
                    try:
                        folders = {str(f): safe_path(p, root_ok=True) for f, p in folders.items()}
                    except ValueError as exc:
                        log.warning("%s: ignoring the plug of %s: %s", self.service, name, exc)
                        continue
                elif name in self.config.services:  # a plug of an earlier version: as this config says
                    folders = {f: c.path for f, c in self.config.services[name].folders.items()}
                else:
                    continue
                found.append({**info, "service": name, "folders": folders})
        return found
