"""The build coordinator: runs GNU make's update algorithm and hands the recipes that must run to workers through
the space.

The engine (:mod:`onitu.make.update`) says which recipe runs next, in GNU make -j1's order; at most ``-j`` tasks
are in the space at a time. Results come back as "done" tuples; a task whose worker died (its session-leased
claim vanished without a result) is written again. After a failure without -k, the tasks still queued are taken
back and nothing new starts. A coordinator killed and restarted with the same command finds its build's tuples
in the space and neither re-runs finished tasks nor duplicates the ones under way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onitu.chunks import TransferError
from onitu.logs import lazy_logger
from onitu.make.execute import Runner
from onitu.make.graph import Graph, Node
from onitu.make.jobserver import Jobserver
from onitu.make.progress import Display
from onitu.make.recipe import Command, location
from onitu.make.tasks import BUILD, DONE, PROGRESS, TASK, WORKING, BadTask, BuildInfo, Result, Step, Task
from onitu.make.update import Job, Update
from onitu.space.errors import EventsLost, RequestExpired

if TYPE_CHECKING:
    from onitu.make.files import BlobStore

log = lazy_logger(__name__)

LOST_CHECK = 0.4  # seconds between checks for tasks whose worker died (a claim lives 1.2 s past its worker)


class BuildOptions:
    """How a build runs (plain classes here: a dataclass costs a third of a millisecond at every start)."""

    def __init__(self, jobs: int | None = 1, keep_going: bool = False, always: bool = False, silent: bool = False,
                 ignore_errors: bool = False, quiet_goals: bool = False) -> None:
        self.jobs = jobs  # tasks in flight at most (None: no limit; with a jobserver, the jobserver decides)
        self.keep_going, self.always, self.silent, self.ignore_errors = keep_going, always, silent, ignore_errors
        self.quiet_goals = quiet_goals  # no "Nothing to be done" lines (-s, or while remaking makefiles)


class _Running:
    __slots__ = ("here", "job", "replay")

    def __init__(self, job: Job | None, replay: bool = False, here: bool = False) -> None:
        self.job = job  # None: queued by an earlier coordinator of this build, not asked for (yet)
        self.replay = replay  # finished under an earlier coordinator: its output was printed then
        self.here = here  # run by this coordinator (a recipe naming $(MAKE)), not by a worker


class Coordinator:
    """Runs one build of ``graph`` in ``build.dir`` through ``runtime``'s space."""

    def __init__(self, graph: Graph, build: BuildInfo, runtime: Any, opts: BuildOptions, display: Display,
                 blobs: BlobStore | None, *, engine: Update | None = None, jobserver: Jobserver | None = None,
                 sub_make_env: dict[str, str] | None = None) -> None:
        """``engine``: an update already started (else one is made here); ``jobserver``: this make's share of a
        budget shared with sub-makes (else ``opts.jobs`` caps the tasks in flight); ``sub_make_env``: what the
        recipes naming $(MAKE) get on top of the build's environment (run here, so sub-makes join this build)."""
        self.graph, self.info, self.rt, self.opts, self.ui = graph, build, runtime, opts, display
        self.space = runtime.client
        self.dir = Path(build.dir)
        self.blobs = blobs
        self.engine = engine or self.new_engine(graph, opts, display)
        self.jobserver = jobserver
        self.sub_make_env = sub_make_env
        self.runner: Runner | None = None
        self.recipes_here: list[threading.Thread] = []  # the threads running recipes that name $(MAKE)
        self.running: dict[str, _Running] = {}  # task key -> what it is
        self.prior: dict[str, tuple] = {}  # tasks an earlier coordinator of this build left: key -> tuple
        self.unseen: set[str] = set()  # running tasks missing from the space at the last check
        self.handled: list[str] = []  # results applied whose tuples are still in the space
        self.waiting_said = False
        self.published: dict[str, int] | None = None  # the progress last written to the space

    # ---- the build ------------------------------------------------------------------------------------------

    @staticmethod
    def new_engine(graph: Graph, opts: BuildOptions, display: Display) -> Update:
        """The update algorithm for ``graph`` with ``opts``; its goal lines are printed once a coordinator runs."""
        return Update(graph, always=opts.always, keep_going=opts.keep_going, ignore_errors=opts.ignore_errors,
                      report=display.message, quiet_goals=opts.quiet_goals, goal_line=goal_printer(display),
                      report_raw=lambda line: display.err(line + "\n"))

    def run(self) -> int:
        """Build the goals; returns make's exit status (0, or 2 when something failed)."""
        self._resume()
        if not self.engine.started:
            self.engine.start()
        self._publish_progress()
        last_check = time.monotonic()
        while True:
            self._dispatch()
            if not self._in_flight():
                break
            self._collect(timeout=0.25)
            if time.monotonic() - last_check > LOST_CHECK:
                self._take_handled()
                if self.rt.kind != "memory":  # worker threads of this process cannot die on their own
                    self._requeue_lost()
                    self.rt.check_workers()
                self.ui.update(workers=self.rt.worker_slots())
                self._publish_progress()
                last_check = time.monotonic()
        self.events.close()
        for thread in self.recipes_here:  # each wrote its result; it may still be reading the space's answer, on
            thread.join(timeout=5)  # a socket of the client the build closes next (libzmq aborts if closed under it)
        self.engine.close()
        remove_intermediates(self.engine, self.dir, self.ui, self.opts.silent)
        self._clean_up()
        return self.engine.status()

    def close(self) -> None:
        """Give back what this build held (jobserver tokens)."""
        if self.jobserver is not None:
            self.jobserver.close()

    def _in_flight(self) -> bool:
        return bool(self.engine.running)

    def _resume(self) -> None:
        """Publish the build; note the tasks an earlier coordinator of this build left in the space."""
        b = self.info.build
        self._subscribe()
        self.space.batch([*([("take", (BUILD, b, None))] if self.space.read_all((BUILD, b, None)) else []),
                          ("write", self.info.tuple())])
        found = [t for kind in (TASK, WORKING, DONE) for t in self.space.read_all((kind, b, None, None))]
        for tup in found:
            if tup[2] in self.graph.nodes:
                self.prior.setdefault(tup[2], tup)
        if self.prior:
            self.ui.message(f"resuming: {len(self.prior)} task(s) of this build found in the space")

    def _dispatch(self) -> None:
        batch: list[Task] = []
        # a decision after a job in GNU's order waits for a free slot, as it waits for the job in make -j1
        while self.engine.ready and not self.engine.stopping and self._may_start():
            job = self.engine.next_job()
            if job is None:
                break
            prior = self.prior.pop(job.key, None)
            if prior is not None:  # queued by an earlier coordinator: wait for its result
                self.running[job.key] = _Running(job, replay=prior[0] == DONE)
                if prior[0] == DONE:
                    self._handle(prior)
                continue
            here = any(c.recursive for c in job.commands)
            self.running[job.key] = _Running(job, here=here)
            if here:
                self._run_here(job)
            else:
                batch.append(self._task(job))
        if batch:  # one round trip for every task that became ready together
            memory = self.rt.kind == "memory"
            self.space.batch([("write", task.tuple(memory=memory)) for task in batch])
        self._show()

    def _count(self) -> int:
        """Tasks in flight (not those an earlier coordinator left and the engine has not asked for)."""
        return len(self.engine.running)

    def _may_start(self) -> bool:
        if self.jobserver is not None:
            return self.jobserver.may_start(self._count())
        return self.opts.jobs is None or self._count() < self.opts.jobs

    def _run_here(self, job: Job) -> None:
        """A recipe naming $(MAKE) runs in this process's host, as GNU runs it: the sub-make needs the build
        directory and joins this build through the space (its budget is this task's slot)."""
        if self.runner is None:
            self.runner = Runner(None)
        env = {**self.info.env, **(self.sub_make_env or {})}
        steps = tuple(Step(c.text, c.ignore) for c in job.commands)

        def run() -> None:
            status, results = self.runner.run(steps, self.dir, env, self.ui.program,  # type: ignore[union-attr]
                                              job.commands[0].shell)
            done = Result(status, results, [], "coordinator").tuple(self.info.build, job.key)
            with contextlib.suppress(Exception):  # the space closed under us: the build is being torn down
                self.space.write(done)

        thread = threading.Thread(target=run, name=f"recipe-{job.key}", daemon=True)
        thread.start()
        self.recipes_here.append(thread)

    def _task(self, job: Job) -> Task:
        # a build in memory has only workers in this process, which run in place: they stage no inputs
        inputs = tuple(self._inputs(job.node)) if self.rt.kind != "memory" else ()
        return Task(self.info.build, job.key, tuple(Step(c.text, c.ignore) for c in job.commands), inputs,
                    self.info.run, self.ui.program, job.commands[0].shell)

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
            if dep is not None and not dep.has_recipe and (dep.phony or not (self.dir / name).exists()):
                stack.extend(reversed([*dep.prereqs, *dep.order_only]))
            elif dep is None or not dep.phony:
                yield self.engine.paths.get(name, name)

    # ---- results --------------------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        """Results are pushed to us; subscribe before anything is read, so none can slip past."""
        self.events = self.space.notify("write", (DONE, self.info.build, None, None))

    def _collect(self, timeout: float) -> None:
        try:
            event = self.events.next_open(timeout)
        except RequestExpired:
            return
        except EventsLost:  # the space restarted without the events we missed: the results are still in it
            log.info("build %s: the space lost the events this coordinator missed; reading the results again",
                     self.info.build)
            self.events.close()
            self._subscribe()
            for tup in self.space.read_all((DONE, self.info.build, None, None)):
                self._handle(tup)
            return
        self._handle(event.tuple)

    def _handle(self, tup: tuple) -> None:
        """Apply one "done" tuple: place returned files, print, settle the target.

        The tuple stays in the space until a later batch takes it (see :meth:`_requeue_lost`): a coordinator
        killed meanwhile finds it again when restarted, and applying it twice does no harm.
        """
        key = tup[2]
        running = self.running.get(key)
        if running is None or running.job is None:  # seen already, or not asked for by the engine
            return
        del self.running[key]
        self.handled.append(key)
        job = running.job
        try:
            result = Result.from_wire(tup[3], key)
            self._place(result)
        except (BadTask, TransferError, OSError) as exc:
            result = Result(127, [], [], "?", f"bad result for {key!r}: {exc}")
        if not running.replay:
            self._print(job.node.name, job.commands, result, self.engine.is_dontcare(key))
        if result.status:
            self._delete_on_error(job)
            if not self.opts.keep_going and not self.engine.stopping:
                self._withdraw()
                if len(self.engine.running) > 1:
                    self.ui.message("*** Waiting for unfinished jobs....")
        self.engine.job_done(job, result.status)
        if self.jobserver is not None:
            self.jobserver.release(self._count())

    def _place(self, result: Result) -> None:
        if not result.outputs:
            return
        from onitu.make.files import place, relative

        for rel, sha, mode in result.outputs:
            if self.blobs is None or not self.blobs.has(sha):
                raise TransferError(f"worker {result.worker} returned {rel} but its content never arrived")
            place(self.blobs.path(sha), self.dir / relative(rel), mode)

    def _print(self, target: str, commands: list[Command], result: Result, dontcare: bool = False) -> None:
        for command, step in zip(commands, result.steps, strict=False):
            if not (command.silent or self.opts.silent):
                self.ui.out(command.echo + "\n")
            self.ui.out(step.out)
            self.ui.err(step.err)
            if step.status and command.ignore and not self.opts.silent and not dontcare:
                self._goal_errors(target)
                self.ui.message(f"[{location(command, target)}] Error {step.status} (ignored)")
        if result.error:
            self.ui.message(f"*** {result.error}")
        if result.status and not dontcare:  # a -include'd makefile that cannot be made fails silently, as in GNU
            self._goal_errors(target)
            failing = commands[len(result.steps) - 1] if result.steps else None
            self.ui.message(f"*** [{location(failing, target)}] Error {result.status}")

    def _goal_errors(self, target: str) -> None:
        """GNU names a required makefile it could not find before the first error while remaking it."""
        for line in self.engine.goal_errors(target):
            self.ui.err(line + "\n")

    def _delete_on_error(self, job: Job) -> None:
        """.DELETE_ON_ERROR: a failed recipe's target is deleted if the recipe changed it (never a precious one)."""
        node = job.node
        if not self.graph.db.delete_on_error or node.phony or node.precious:
            return
        path = self.dir / node.name
        with contextlib.suppress(OSError):
            if path.stat().st_mtime_ns != job.before and not path.is_dir():
                self.ui.message(f"*** Deleting file '{node.name}'")
                path.unlink()

    def _withdraw(self) -> None:
        """Take back the tasks no worker has claimed yet: after a failure without -k, nothing new starts."""
        b = self.info.build
        for key, running in list(self.running.items()):
            if running.job is None:
                continue
            try:
                self.space.take((TASK, b, key, None), timeout=0)
            except RequestExpired:
                continue  # claimed: it finishes, as GNU lets running jobs finish
            del self.running[key]
            self.engine.withdraw(running.job)

    def _requeue_lost(self) -> None:
        """Write again each task that is neither queued, claimed nor done twice in a row: its worker died.

        A worker takes a task, then writes its session-leased claim: a task seen in neither place once may be
        between the two; not seen in two checks ``LOST_CHECK`` apart, it is lost.
        """
        b = self.info.build
        seen: set[str] = set()
        for kind in (TASK, WORKING, DONE):  # the order a task moves in, so none can slip between two reads
            found = self.space.read_all((kind, b, None, None))
            seen.update(t[2] for t in found)
            if kind == DONE:  # a result the notify stream has not brought (yet)
                for tup in found:
                    self._handle(tup)
        missing = {k for k, r in self.running.items() if r.job is not None and not r.here and k not in seen}
        lost, self.unseen = missing & self.unseen, missing - self.unseen
        for key in lost:
            job = self.running[key].job
            assert job is not None
            self.ui.message(f"the worker making '{job.node.name}' died; running its recipe again")
            self.running[key] = _Running(job)
            self.space.write(self._task(job).tuple())

    def _take_handled(self) -> None:
        """Take away, in one batch, the results applied since the last time."""
        self._take_all([(DONE, self.info.build, t, None) for t in self.handled])
        self.handled.clear()

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

    def _clean_up(self) -> None:
        """Remove every tuple of this build (workers still running a task then drop their result)."""
        b = self.info.build
        found = [t for kind in (TASK, WORKING, DONE) for t in self.space.read_all((kind, b, None, None))]
        progress = [(PROGRESS, b, None)] if self.published is not None else []
        self._take_all([(t[0], b, t[2], None) for t in found] + [(BUILD, b, None), *progress])

    def _publish_progress(self) -> None:
        """``(PROGRESS, build, {total, done, running})`` when it changed: the tasks in the space are only the ones
        dispatched, so the targets done and still to do are the coordinator's to tell (the API shows them)."""
        counts = {"total": len(self.engine.rank), "done": self.engine.done_count(), "running": self._count()}
        if counts == self.published:
            return
        b = self.info.build
        self.space.batch([*([("take", (PROGRESS, b, None))] if self.published is not None else []),
                          ("write", (PROGRESS, b, counts))])
        self.published = counts

    def _show(self) -> None:
        self.ui.update(total=len(self.engine.rank), done=self.engine.done_count(), running=self._count())


def goal_printer(display: Display) -> Callable[[str, str], None]:
    """Where an engine's closing lines about goals go: "up to date" to stdout, "not remade" to stderr."""

    def say(stream: str, text: str) -> None:
        if stream == "out":
            display.out(f"{display.program}: {text}\n")
        else:
            display.message(text)

    return say


def remove_intermediates(engine: Update, directory: Path, display: Display, silent: bool) -> None:
    """GNU deletes the intermediate files it made, and says so: ``rm a.o b.c``."""
    removed = []
    for name in engine.intermediates():
        try:
            (directory / name).unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            display.message(f"unlink: {name}: {exc.strerror}")
            continue
        removed.append(name)
    if removed and not silent:
        display.out("rm " + " ".join(removed) + "\n")
