"""GNU make's update algorithm (remake.c), driven by events: it hands out jobs and is told when they end.

The rules, as GNU make 4.3 applies them:

1. A target is considered once all it depends on is settled: each prerequisite that is not an intermediate file
   is brought up to date first; an intermediate file (made by a chain of implicit rules) is only *checked*: the
   files it depends on are brought up to date, but it is not made yet.
2. A target must be remade if it is missing, if a prerequisite is missing or newer, if an intermediate file it
   depends on exists and is newer, or if what that intermediate depends on (recursively) is newer than the
   target; -B remakes every target with a recipe. Order-only prerequisites never force anything.
3. Only a target that must be remade makes its intermediate prerequisites, then is decided again: so a missing
   intermediate is not rebuilt when its dependents are up to date.
4. A target without a recipe that exists and none of whose prerequisites changed is not remade. A missing file
   with no rule fails ("No rule to make target"), unless .DEFAULT gives a recipe.
5. The rules of a double-colon target are updated one after another, each on its own; a target with several
   targets made by one recipe (grouped targets, multi-target pattern rules) runs that recipe once for all.
6. Without -k the first failure stops new jobs; with -k everything not depending on a failure is still made.
7. What the makefile phase settled (the makefiles, and all they depend on) is not considered again for the goals:
   a FORCE'd generator of an included file runs once. A -include'd makefile that failed quietly is reported when a
   target needs it, as "No rule to make target" (GNU 4.3's words).

Jobs become ready in any order; the lowest rank (GNU make -j1's depth-first order) goes first, so one job at a
time runs exactly as GNU make -j1 runs them.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Mapping

from onitu.make.gnuhash import table_order
from onitu.make.graph import Graph, Node
from onitu.make.recipe import Command

NEW = 1 << 62  # the mtime of a target remade under -n: newer than anything

NONE, CHECKING, CHECKED, MAKING, RUNNING, DONE = range(6)


class Job:
    """A recipe to run: the node whose recipe it is, its commands, and its file's mtime before.

    (This and _State are plain classes: a dataclass costs a third of a millisecond at every start.)"""

    __slots__ = ("before", "commands", "key", "node")

    def __init__(self, key: str, node: Node, commands: list[Command], before: int | None) -> None:
        self.key, self.node, self.commands, self.before = key, node, commands, before


class _State:
    __slots__ = ("blocked", "changed", "checkers", "dontcare", "failed", "newer", "next_colon", "pending", "phase",
                 "ran", "started", "waiters", "wanted")

    def __init__(self) -> None:
        self.phase = NONE
        self.wanted = False  # someone needs it made (not only checked)
        self.pending = 0  # outstanding prerequisites in the current wait
        self.waiters: list[str] = []  # made: told when DONE
        self.checkers: list[str] = []  # told when CHECKED
        self.next_colon = 0
        self.failed = False  # its recipe failed, or a prerequisite did
        self.blocked = False  # not remade because a prerequisite failed
        self.started = False  # a job with commands was handed out for it
        self.ran = False  # its recipe ran (for -n: would have)
        self.dontcare = False  # only a -include'd makefile needs it: its failure is silent
        self.changed = False  # dependents see it as changed: its mtime moved, or it is missing
        self.newer: list[str] = []


Report = Callable[[str], None]  # one of make's own lines ("onitu make: ..." added by the caller), for stderr
GoalLine = Callable[[str, str], None]  # ("out" | "err", a closing line about a goal, without the program prefix)


class Update:
    """One run of GNU make's update algorithm over ``graph``'s goals."""

    def __init__(self, graph: Graph, *, always: bool = False, keep_going: bool = False, dry_run: bool = False,
                 ignore_errors: bool = False, report: Report | None = None, goal_line: GoalLine | None = None,
                 quiet_goals: bool = False, dontcare: set[str] | None = None,
                 goal_errors: dict[str, str] | None = None, report_raw: Report | None = None,
                 settled: Mapping[str, bool] | None = None) -> None:
        """``quiet_goals``: no closing lines (-s; remaking makefiles); ``dontcare``: goals whose failure is silent
        and not an error (-include'd makefiles); ``goal_errors``: a line to print before the first error about a
        goal (a required makefile that was not found); ``settled``: the targets an earlier update of the same
        makefiles settled (key -> failed), see :meth:`settled`."""
        self.graph, self.nodes = graph, graph.nodes
        self.always, self.keep_going, self.dry_run, self.ignore_errors = always, keep_going, dry_run, ignore_errors
        self.report = report or (lambda text: None)
        self.report_raw = report_raw or (lambda text: None)  # a line printed as it is (no program prefix)
        self.goal_line = goal_line or (lambda stream, text: None)
        self.quiet_goals = quiet_goals
        self.dontcare = dontcare or set()
        self._goal_errors = dict(goal_errors or {})
        self._settled = settled or {}
        self.started = False
        self._goals_said = 0
        self._counted: set[str] = set()
        self.locate = graph.locate
        self.rank = {key: i for i, key in enumerate(graph.order())}
        self.state: dict[str, _State] = {}
        self.ready: list[tuple[int, int, str]] = []  # (rank, 0 decide | 1 job, key)
        self._todo: deque[Callable[[], None]] = deque()
        self._mtimes: dict[str, int | None] = {}
        self._colon_mtime: dict[str, int | None] = {}  # a double-colon target's mtime before any of its rules ran
        self.paths: dict[str, str] = {}  # prerequisites found on the vpath: name -> where
        self.stopping = False  # a failure without -k: no new jobs
        self.failures = 0
        self.running: dict[str, Job] = {}
        self._done = 0
        for node in self.nodes.values():  # listed as .INTERMEDIATE but there already: GNU leaves it alone
            if node.intermediate and not node.chained and self._mtime(node.name) is not None:
                node.intermediate = False

    # ---- driving ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Ask for every goal."""
        self.started = True
        for goal in self.graph.goals:
            self._need(goal, None)
        self._run()

    def has_work(self) -> bool:
        """Is a job ready (or are decisions pending that may make one)? Decides what it can without running
        anything, so a build with nothing to do needs no workers at all."""
        self._run()
        while self.ready and not self.stopping:
            _, kind, key = self.ready[0]
            if kind:
                return True
            heapq.heappop(self.ready)
            if self.state[key].phase != DONE:
                self._decide(key)
            self._run()
        return False

    def status(self) -> int:
        """make's exit status so far: 2 when a recipe failed or a goal that matters was not made, else 0."""
        failed = any(self.outcome(g) in ("failed", "blocked") and not self.is_dontcare(g) for g in self.graph.goals)
        return 2 if self.failures or failed else 0

    def is_dontcare(self, key: str) -> bool:
        """Is ``key`` wanted only by goals whose failure does not matter (-include'd makefiles)?"""
        return self.state[key].dontcare if key in self.state else False

    def goal_errors(self, key: str) -> list[str]:
        """The line GNU prints before the first error about a required makefile it could not find."""
        line = self._goal_errors.pop(self.nodes[key].name if key in self.nodes else key, None)
        return [line] if line else []

    def settled(self) -> dict[str, bool]:
        """The targets this update settled (key -> failed): the makefile phase hands them to the goals' update."""
        return {key: st.failed for key, st in self.state.items() if st.phase == DONE}

    def done_count(self) -> int:
        """How many targets are settled (for the progress line)."""
        return self._done

    def next_job(self) -> Job | None:
        """The ready job with the lowest rank (its recipe expanded now), or None.

        Decisions wait in the same queue as jobs, so that what GNU make -j1 does first (a recipe, a "No rule to
        make target" error) happens first here too."""
        self._run()
        while self.ready and not self.stopping:
            _, kind, key = heapq.heappop(self.ready)
            if self.state[key].phase == DONE:  # made meanwhile by a run of its recipe for another target
                continue
            job = self._job(key) if kind else self._decide(key)
            self._run()
            if job is not None:
                return job
        return None

    @property
    def finished(self) -> bool:
        """Nothing ready and nothing running: the build is over (or stopped)."""
        return not self.running and not self._todo and (self.stopping or not self.ready)

    def job_done(self, job: Job, status: int) -> None:
        """A job ended with ``status`` (0: success)."""
        self.running.pop(job.key, None)
        node = job.node
        self._mtimes.pop(node.name, None)
        after = self._mtime(node.name)
        st = self.state[job.key]
        st.ran = True
        if self.dry_run and not (job.commands and all(c.recursive for c in job.commands)):
            self._mtimes[node.name] = after = NEW
        st.changed = node.phony or after is None or after != job.before
        if status and not st.dontcare:
            self.failures += 1
            if not self.keep_going:
                self.stopping = True
        for other in node.also_make:  # made by the same run of the recipe: done, whoever asks for them later
            if other in self.nodes and self._st(other).phase != DONE:
                self._mtimes.pop(other, None)
                other_st = self.state[other]
                other_st.ran, other_st.changed = True, True
                self._finish(other, failed=bool(status))
        self._finish(job.key, failed=bool(status))
        self._run()

    def withdraw(self, job: Job) -> None:
        """A job that will not run after all (taken back from the space once the build stopped)."""
        self.running.pop(job.key, None)

    # ---- requests -----------------------------------------------------------------------------------------

    def _st(self, key: str) -> _State:
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = _State()
        return st

    def _is_intermediate(self, key: str) -> bool:
        node = self.nodes[key]
        return node.intermediate and not node.phony

    def _need(self, key: str, parent: str | None) -> None:
        """``parent`` needs ``key`` made (None: a goal)."""
        st = self._st(key)
        if st.phase == DONE:
            if parent is not None:
                self._todo.append(lambda: self._settle(parent))
            return
        if parent is not None:
            st.waiters.append(parent)
        if st.wanted:
            return
        st.wanted = True
        st.dontcare = key in self.dontcare if parent is None else self.state[parent].dontcare
        if st.phase == NONE:
            st.phase = CHECKING
            self._todo.append(lambda: self._check(key))
        elif st.phase == CHECKED:
            self._todo.append(lambda: self._consider(key))

    def _need_checked(self, key: str, parent: str) -> None:
        """``parent`` depends on the intermediate file ``key``: make what it depends on, not the file itself."""
        st = self._st(key)
        if st.phase >= CHECKED:
            self._todo.append(lambda: self._settle(parent))
            return
        st.checkers.append(parent)
        if st.phase == NONE:
            st.dontcare = self.state[parent].dontcare
            st.phase = CHECKING
            self._todo.append(lambda: self._check(key))

    def _check(self, key: str) -> None:
        """Bring up to date what ``key`` depends on (intermediate prerequisites only checked)."""
        st = self.state[key]
        st.phase = CHECKING
        node = self.nodes[key]
        if key in self._settled:
            self._settle_again(key)
            return
        if node.colons:  # a double-colon target: its rules one after another, each judged by the mtime before
            self._colon_mtime[node.name] = self._mtime_of(node)
            st.pending = 1
            self._need(node.colons[0], key)
            return
        deps = node.deps()
        st.pending = len(deps) + 1
        for dep in deps:
            if self._is_intermediate(dep):
                self._need_checked(dep, key)
            else:
                self._need(dep, key)
        self._todo.append(lambda: self._settle(key))

    def _settle_again(self, key: str) -> None:
        """``key`` was settled while remaking makefiles: as it was then, without looking at it again."""
        st, node = self.state[key], self.nodes[key]
        if self._settled[key] and not st.dontcare:  # quiet then (a -include'd makefile), not now
            self._no_rule(key)
            return
        st.changed = self._mtime_of(node) is None
        self._finish(key, failed=self._settled[key])

    def _settle(self, key: str) -> None:
        """One of the things ``key`` waits for is settled."""
        st = self.state[key]
        st.pending -= 1
        if st.pending:
            return
        node = self.nodes[key]
        if st.phase == CHECKING and node.colons and st.next_colon + 1 < len(node.colons):
            done = self.state[node.colons[st.next_colon]]
            if not done.failed or self.keep_going:
                st.next_colon += 1
                st.pending = 1
                self._need(node.colons[st.next_colon], key)
                return
        if st.phase == CHECKING:
            st.phase = CHECKED
            for parent in st.checkers:
                self._todo.append(lambda p=parent: self._settle(p))
            st.checkers.clear()
            if st.wanted:
                self._consider(key)
        elif st.phase == MAKING:
            heapq.heappush(self.ready, (self.rank.get(key, len(self.rank)), 0, key))

    # ---- decisions ----------------------------------------------------------------------------------------

    def _consider(self, key: str) -> None:
        """All that ``key`` depends on is settled: fail, make its intermediate prerequisites, or decide."""
        st = self.state[key]
        if st.phase not in (CHECKED,):
            return
        node = self.nodes[key]
        if self._dep_failed(key):
            st.failed = True
            self._finish(key, failed=True, blocked=True)
            return
        if node.colons:
            st.changed = any(self.state[c].changed for c in node.colons)
            self._finish(key, failed=False)
            return
        st.phase = MAKING
        this = self._mtime_of(node)
        must = this is None or any(self._check_dep(d, this) for d in node.prereqs)
        inter = [d for d in node.deps() if self._is_intermediate(d) and self._st(d).phase != DONE]
        st.pending = 1
        if (must or self.always) and inter:
            st.pending += len(inter)
            for dep in inter:
                self._need(dep, key)
        self._todo.append(lambda: self._settle(key))

    def _dep_failed(self, key: str) -> bool:
        node = self.nodes[key]
        deps = node.colons or node.deps()
        return any(self.state[d].failed for d in deps if d in self.state and self.state[d].phase == DONE)

    def _check_dep(self, dep: str, this: int) -> bool:
        """GNU's check_dep: does ``dep`` make a target of mtime ``this`` out of date?"""
        node = self.nodes[dep]
        mtime = self._mtime_of(node)
        if node.phony or not node.intermediate:
            return mtime is None or mtime > this
        if mtime is not None:
            return mtime > this
        return any(self._check_dep(d, this) for d in node.prereqs if d in self.nodes)

    def _decide(self, key: str) -> Job | None:
        """GNU's second look at a target whose prerequisites (intermediate ones included) are all made."""
        st = self.state[key]
        node = self.nodes[key]
        if self._dep_failed(key):
            self._finish(key, failed=True, blocked=True)
            return None
        this = self._colon_mtime[node.name] if node.double_colon else self._mtime_of(node)
        run = this is None
        changed_any = False
        newer: list[str] = []
        for dep in node.prereqs:
            dep_node = self.nodes.get(dep)
            dep_time = self._mtime_of(dep_node) if dep_node is not None else self._mtime(dep)
            inter = dep_node is not None and self._is_intermediate(dep)
            changed = (dep_time is None and not inter) or (dep in self.state and self.state[dep].changed)
            later = (dep_time is None and not inter) or (this is not None and dep_time is not None and dep_time > this)
            if inter and dep_time is None and this is not None:
                later = self._check_dep(dep, this)
            changed_any = changed_any or changed
            run = run or later
            if self.always or changed or later or this is None:
                newer.append(dep)
        if node.double_colon and not node.all_prereqs:
            run = True
        elif this is not None and node.is_target and not node.has_recipe and not changed_any and not self.always:
            run = False
        elif self.always and node.has_recipe:
            run = True
        st.newer = newer
        if not run:
            self._finish(key, failed=False)
            return None
        if node.has_recipe:
            st.phase = RUNNING
            heapq.heappush(self.ready, (self.rank.get(key, len(self.rank)), 1, key))
            return None
        if node.phony or node.is_target:
            st.changed = this is None
            self._finish(key, failed=False)
            return None
        if st.dontcare:  # a -include'd makefile no rule makes: silently not there
            self._finish(key, failed=True)
            return None
        self._no_rule(key)
        return None

    def _no_rule(self, key: str) -> None:
        st, node = self.state[key], self.nodes[key]
        parent = next((p for p in st.waiters if p in self.nodes), None)
        needed = f", needed by '{self.nodes[parent].name}'" if parent else ""
        for line in self.goal_errors(key):
            self.report_raw(line)
        self.report(f"*** No rule to make target '{node.name}'{needed}" + (".  Stop." if not self.keep_going else "."))
        self.failures += 1
        self.stopping = self.stopping or not self.keep_going
        self._finish(key, failed=True)

    def _job(self, key: str) -> Job | None:
        node = self.nodes[key]
        st = self.state[key]
        if any(other in self.running for other in node.also_make):  # a grouped target's recipe already runs
            return None
        path = {d: self.paths[d] for d in (*node.all_prereqs, *node.order_only) if d in self.paths}
        commands = node.commands(st.newer, path)
        if self.ignore_errors:
            commands = [c.ignoring() for c in commands]
        before = self._mtime(node.name)
        self.paths.pop(node.name, None)  # remade here, not where vpath found it
        if not commands:
            st.ran = True
            self._mtimes.pop(node.name, None)
            after = self._mtime(node.name)
            st.changed = node.phony or after is None or after != before
            self._finish(key, failed=False)
            return None
        st.started = True
        job = Job(key, node, commands, before)
        self.running[key] = job
        return job

    def _finish(self, key: str, *, failed: bool, blocked: bool = False) -> None:
        st = self.state[key]
        st.phase, st.failed, st.blocked = DONE, failed, blocked
        self._done += 1
        for parent in [*st.waiters, *st.checkers]:
            self._todo.append(lambda p=parent: self._settle(p))
        st.waiters.clear()
        st.checkers.clear()
        if key in self.graph.goals:
            self._say_goals()

    def _run(self) -> None:
        while self._todo:
            self._todo.popleft()()

    # ---- files --------------------------------------------------------------------------------------------

    def _mtime_of(self, node: Node) -> int | None:
        return None if node.phony else self._mtime(node.name)

    def _mtime(self, name: str) -> int | None:
        if name in self._mtimes:
            return self._mtimes[name]
        mtime = self.locate.mtime(name)
        if mtime is None:
            found = self.locate.search(name)
            if found is not None:
                self.paths[name] = found
                mtime = self.locate.mtime(found)
        self._mtimes[name] = mtime
        return mtime

    # ---- the end ------------------------------------------------------------------------------------------

    def outcome(self, key: str) -> str:
        """``ok``, ``failed`` (its recipe, or no rule), ``blocked`` (a prerequisite failed) or ``pending``."""
        st = self.state.get(key)
        if st is None or st.phase != DONE:
            return "pending"
        if not st.failed:
            return "ok"
        return "blocked" if st.blocked else "failed"

    def _say_goals(self, final: bool = False) -> None:
        """GNU's closing line for each goal, in goal order, once it is done: a goal for which no command ran
        (counting each target for the first goal that needs it) is "up to date" or has "Nothing to be done"; with
        -k, a goal whose prerequisites failed is "not remade because of errors"."""
        goals = self.graph.goals
        while self._goals_said < len(goals):
            goal = goals[self._goals_said]
            outcome = self.outcome(goal)
            if outcome == "pending" and not final:
                return
            self._goals_said += 1
            mine = [k for k in self.graph.subtree(goal) if k not in self._counted]
            self._counted.update(mine)
            if outcome == "blocked" and self.keep_going and not self.dry_run and not self.state[goal].dontcare:
                self.goal_line("err", f"Target '{self.nodes[goal].name}' not remade because of errors.")
            if (outcome != "ok" or self.stopping or self.quiet_goals
                    or any(self.state[k].started for k in mine if k in self.state)):
                continue
            node = self.nodes[goal]
            quiet = node.phony or not node.has_recipe
            self.goal_line("out", f"Nothing to be done for '{node.name}'." if quiet
                           else f"'{node.name}' is up to date.")

    def close(self) -> None:
        """The build is over: say what is left to say about the goals."""
        self._say_goals(final=True)

    def intermediates(self) -> list[str]:
        """The intermediate files GNU deletes at the end (made, or considered, here; not secondary, precious or a
        goal), in the order GNU's file table lists them."""
        out = []
        goals = set(self.graph.goals)
        for key, st in self.state.items():
            node = self.nodes[key]
            if (node.intermediate and not node.secondary and not node.precious and key not in goals
                    and st.phase == DONE and st.wanted and not node.colons):
                out.append(node.name)
        db = self.graph.db
        return table_order(out, len(db.mentioned | db.entries.keys() | self.nodes.keys()) + len(db.suffixes))

