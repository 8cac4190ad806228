"""The make driver: walks the graph like GNU make, hands the recipes that must run to workers through the space.

A target becomes ready when all its prerequisites are handled; GNU make's out-of-date rule then decides whether
its recipe runs. Ready tasks go into the space in the order GNU make -j1 would run them, at most ``-j`` at a
time. Results come back as "done" tuples; a task whose worker died (its session-leased claim vanished without a
result) is written again. A driver killed and restarted with the same command finds its build's tuples in the
space and neither re-runs finished tasks nor duplicates the ones under way.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from onitu.make.files import BlobStore, TransferError, place, relative
from onitu.make.graph import Command, Graph, Node
from onitu.make.progress import Display
from onitu.make.runtime import Runtime
from onitu.make.tasks import BUILD, DONE, TASK, WORKING, BadTask, BuildInfo, Result, Step, Task
from onitu.space import EventsLost, RequestExpired

log = logging.getLogger(__name__)

LOST_CHECK = 0.4  # seconds between checks for tasks whose worker died (a claim lives 1.2 s past its worker)


@dataclass
class Options:
    jobs: int | None = 1  # tasks in flight at most (None: no limit)
    keep_going: bool = False
    always: bool = False
    silent: bool = False


@dataclass
class _Running:
    commands: list[Command]
    before: float | None = None  # the target's mtime when its task was queued
    replay: bool = False  # finished under an earlier driver: its output was printed then


class Driver:
    """Runs one build of ``graph`` in ``build_dir`` through ``runtime``'s space."""

    def __init__(self, graph: Graph, build: BuildInfo, runtime: Runtime, opts: Options, display: Display,
                 blobs: BlobStore | None) -> None:
        self.graph, self.info, self.rt, self.opts, self.ui = graph, build, runtime, opts, display
        self.space = runtime.client
        self.dir = Path(build.dir)
        self.blobs = blobs
        order = graph.order()
        self.rank = {name: i for i, name in enumerate(order)}
        self.dependents: dict[str, list[str]] = {name: [] for name in order}
        self.waiting: dict[str, int] = {}
        for name in order:
            deps = _unique([*graph.nodes[name].prereqs, *graph.nodes[name].order_only])
            self.waiting[name] = len(deps)
            for dep in deps:
                self.dependents[dep].append(name)
        self.ready: list[tuple[int, str]] = [(self.rank[n], n) for n in order if self.waiting[n] == 0]
        heapq.heapify(self.ready)
        self.remade: set[str] = set()
        self.ran: set[str] = set()      # targets whose recipe ran in this build
        self.failed: set[str] = set()   # recipe failed
        self.blocked: set[str] = set()  # not remade because a prerequisite failed
        self.running: dict[str, _Running] = {}
        self.adopted: set[str] = set()  # targets whose task an earlier driver of this build had queued
        self.stopping = False
        self.finished = 0
        self.unseen: set[str] = set()  # running tasks missing from the space at the last check
        self.handled: list[str] = []  # results applied whose tuples are still in the space

    # ---- the build ------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Build the goals; returns make's exit status (0, or 2 when a recipe failed)."""
        self._resume()
        last_check = time.monotonic()
        while True:
            self._dispatch()
            if not self.running:
                break
            self._collect(timeout=0.25)
            if time.monotonic() - last_check > LOST_CHECK:
                self._requeue_lost()
                self.rt.check_workers()
                self.ui.update(workers=self.rt.worker_slots())
                last_check = time.monotonic()
        self.events.close()
        self._report_goals()
        self._clean_up()
        return 2 if self.failed or self.blocked else 0

    def _resume(self) -> None:
        """Publish the build; adopt the tasks an earlier driver of this build left in the space."""
        b = self.info.build
        self._subscribe()
        self.space.batch([*([("take", (BUILD, b, None))] if self.space.read_all((BUILD, b, None)) else []),
                          ("write", self.info.tuple())])
        prior = [t for kind in (TASK, WORKING, DONE) for t in self.space.read_all((kind, b, None, None))]
        for tup in prior:
            node = self.graph.nodes.get(tup[2])
            if node is not None and node.name not in self.adopted:
                self.adopted.add(node.name)
                self.running[node.name] = _Running(node.commands([]), replay=tup[0] == DONE)
        if prior:
            self.ui.message(f"resuming: {len(self.adopted)} task(s) of this build found in the space")
        for tup in prior:
            if tup[0] == DONE:
                self._handle(tup)

    def _dispatch(self) -> None:
        batch: list[Task] = []
        while self.ready and not self.stopping:
            _, name = self.ready[0]
            node = self.graph.nodes[name]
            if any(d in self.failed or d in self.blocked for d in (*node.prereqs, *node.order_only)):
                heapq.heappop(self.ready)
                self.blocked.add(name)
                self._finish(name, remade=False)
                continue
            if name in self.adopted:  # its task was queued by an earlier driver: handled already
                heapq.heappop(self.ready)
                continue
            decision = self.graph.decide(name, self._mtime, self.remade, self.opts.always)
            commands = node.commands(decision.newer) if decision.run and node.has_recipe else []
            if not commands:
                heapq.heappop(self.ready)
                self._finish(name, remade=decision.run)
                continue
            if self._at_limit():
                break
            heapq.heappop(self.ready)
            batch.append(self._task(node, commands))
        if batch:  # one round trip for every task that became ready together
            self.space.batch([("write", task.tuple()) for task in batch])
        self._show()

    def _at_limit(self) -> bool:
        return self.opts.jobs is not None and len(self.running) >= self.opts.jobs

    def _task(self, node: Node, commands: list[Command]) -> Task:
        self.running[node.name] = _Running(commands, before=self._mtime(node.name))
        return Task(self.info.build, node.name, tuple(Step(c.text, c.ignore) for c in commands),
                    tuple(self._inputs(node)), self.info.run)

    def _inputs(self, node: Node) -> Iterable[str]:
        """The files a recipe may read: prerequisites, looking through recipe-less aggregates."""
        seen: set[str] = set()
        stack = [*reversed(node.prereqs), *reversed(node.order_only)]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            dep = self.graph.nodes.get(name)
            if dep is not None and not dep.has_recipe and (dep.phony or self._mtime(name) is None):
                stack.extend(reversed([*dep.prereqs, *dep.order_only]))
            elif dep is None or not dep.phony:
                yield name

    def _mtime(self, name: str) -> float | None:
        return mtime_of(self.dir / name)

    # ---- results --------------------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        """Results are pushed to us; subscribe before anything is read, so none can slip past."""
        self.events = self.space.notify("write", (DONE, self.info.build, None, None))

    def _collect(self, timeout: float) -> None:
        try:
            event = self.events.next(timeout)
        except RequestExpired:
            return
        except EventsLost:  # the space restarted without the events we missed: the results are still in it
            log.info("build %s: the space lost the events this driver missed; reading the results again",
                     self.info.build)
            self.events.close()
            self._subscribe()
            for tup in self.space.read_all((DONE, self.info.build, None, None)):
                self._handle(tup)
            return
        self._handle(event.tuple)

    def _handle(self, tup: tuple) -> None:
        """Apply one "done" tuple: place returned files, print, settle the target.

        The tuple stays in the space until a later batch takes it (see :meth:`_requeue_lost`): a driver killed
        meanwhile finds it again when restarted, and applying it twice does no harm.
        """
        target = tup[2]
        running = self.running.pop(target, None)
        if running is None:  # seen already (the notify and a check of the space can both bring it)
            return
        self.handled.append(target)
        try:
            result = Result.from_wire(tup[3], target)
            self._place(result)
        except (BadTask, TransferError, OSError) as exc:
            result = Result(127, [], [], "?", f"bad result for {target!r}: {exc}")
        if not running.replay:
            self._print(target, running.commands, result)
        self.ran.add(target)
        if result.status:
            self.failed.add(target)
            if not self.opts.keep_going and not self.stopping:
                self.stopping = True
                if self.running:
                    self.ui.message("*** Waiting for unfinished jobs....")
        # GNU: a prerequisite counts as changed when its recipe moved its mtime (or it is missing or phony)
        after = self._mtime(target)
        changed = self.graph.nodes[target].phony or after is None or after != running.before or running.replay
        self._finish(target, remade=not result.status and changed)

    def _place(self, result: Result) -> None:
        for rel, sha, mode in result.outputs:
            if self.blobs is None or not self.blobs.has(sha):
                raise TransferError(f"worker {result.worker} returned {rel} but its content never arrived")
            place(self.blobs.path(sha), self.dir / relative(rel), mode)

    def _print(self, target: str, commands: list[Command], result: Result) -> None:
        for command, step in zip(commands, result.steps, strict=False):
            if not (command.silent or self.opts.silent):
                self.ui.out(command.echo + "\n")
            self.ui.out(step.out)
            self.ui.err(step.err)
            if step.status and command.ignore:
                self.ui.message(f"[{_where(command, target)}] Error {step.status} (ignored)")
        if result.error:
            self.ui.message(f"*** {result.error}")
        if result.status:
            failing = commands[len(result.steps) - 1] if result.steps else None
            self.ui.message(f"*** [{_where(failing, target)}] Error {result.status}")

    def _finish(self, name: str, remade: bool) -> None:
        self.finished += 1
        if remade:
            self.remade.add(name)
        for dep in self.dependents[name]:
            self.waiting[dep] -= 1
            if self.waiting[dep] == 0:
                heapq.heappush(self.ready, (self.rank[dep], dep))

    def _requeue_lost(self) -> None:
        """Write again each task that is neither queued, claimed nor done twice in a row: its worker died.

        A worker takes a task, then writes its session-leased claim: a task seen in neither place once may be
        between the two; not seen in two checks ``LOST_CHECK`` apart, it is lost. Also takes away the results
        handled since the last check, in one batch.
        """
        b = self.info.build
        self._take_all([(DONE, b, t, None) for t in self.handled])
        self.handled.clear()
        seen: set[str] = set()
        for kind in (TASK, WORKING, DONE):  # the order a task moves in, so none can slip between two reads
            found = self.space.read_all((kind, b, None, None))
            seen.update(t[2] for t in found)
            if kind == DONE:  # a result the notify stream has not brought (yet)
                for tup in found:
                    self._handle(tup)
        missing = {n for n in self.running if n not in seen}
        lost, self.unseen = missing & self.unseen, missing - self.unseen
        for name in lost:
            self.ui.message(f"the worker making '{name}' died; running its recipe again")
            task = self._task(self.graph.nodes[name], self.running.pop(name).commands)
            self.space.write(task.tuple())

    def _take_all(self, templates: list[tuple]) -> None:
        """Take these tuples in one round trip (one by one if some are gone already)."""
        if not templates:
            return
        try:
            self.space.batch([("take", t) for t in templates])
        except RequestExpired:
            for t in templates:
                with contextlib.suppress(RequestExpired):
                    self.space.batch([("take", t)])

    def _report_goals(self) -> None:
        """GNU's closing lines: a goal for which no command ran (counting each target for the first goal that
        needs it, as make -j1 would) is "up to date", or has "Nothing to be done"."""
        counted: set[str] = set()
        for goal in self.graph.goals:
            if goal in self.blocked:
                self.ui.message(f"Target '{goal}' not remade because of errors.")
                continue
            mine = [n for n in self.graph.subtree(goal) if n not in counted]
            counted.update(mine)
            if goal in self.failed or self.stopping or any(n in self.ran for n in mine):
                continue
            node = self.graph.nodes[goal]
            if node.phony or not node.has_recipe:
                self.ui.out(f"{self.ui.program}: Nothing to be done for '{goal}'.\n")
            else:
                self.ui.out(f"{self.ui.program}: '{goal}' is up to date.\n")

    def _clean_up(self) -> None:
        """Remove every tuple of this build (workers still running a task then drop their result)."""
        b = self.info.build
        found = [t for kind in (TASK, WORKING, DONE) for t in self.space.read_all((kind, b, None, None))]
        self._take_all([(t[0], b, t[2], None) for t in found] + [(BUILD, b, None)])

    def _show(self) -> None:
        self.ui.update(total=len(self.rank), done=self.finished, running=len(self.running))


def mtime_of(path: Path) -> float | None:
    """A file's modification time in seconds, or None if it does not exist."""
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except (FileNotFoundError, NotADirectoryError):
        return None


def _where(command: Command | None, target: str) -> str:
    """GNU's "[Makefile:12: target]" for the recipe line that failed."""
    return f"{command.file}:{command.line}: {target}" if command and command.file and command.line else target


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
