"""The tuples a build is made of, and the checks a worker applies to what it reads from the space.

A build ``B`` lives in the space as::

    ("make.build",   B, info)            what workers need: build dir, same-host token, environment, file server
    ("make.task",    B, target, spec)     a task ready to run: its commands and input files
    ("make.working", B, target, worker)   taken by a worker; session-leased, so it vanishes if the worker dies
    ("make.done",    B, target, result)   finished: exit status, output per command, produced files
    ("make.worker",  worker, info)        a worker's presence (session-leased)
    ("make.progress", B, counts)          the coordinator's targets total, done and running (for the API's page)

A task is always in exactly one of task / working / done: a worker moves it with one atomic batch, so the coordinator
reading them in that order can never miss one and never sees it twice.

The classes here are plain classes, not dataclasses: every ``onitu make`` run loads them, and making a dataclass
costs about a third of a millisecond at import (its methods are generated and compiled).
"""

from __future__ import annotations

from typing import Any

BUILD, TASK, WORKING, DONE, WORKER = "make.build", "make.task", "make.working", "make.done", "make.worker"
PROGRESS = "make.progress"


class BadTask(ValueError):
    """A tuple in the space that does not have the shape of a make task (the space is shared: trust nothing)."""


def _field(d: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise BadTask(f"{where}: missing {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadTask(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


class Step:
    """One recipe line as the worker runs it."""

    __slots__ = ("ignore", "text")

    def __init__(self, text: str, ignore: bool) -> None:
        self.text, self.ignore = text, ignore

    def wire(self) -> list:
        return [self.text, self.ignore]


class Task:
    """What a worker needs to run one target's recipe."""

    __slots__ = ("build", "inputs", "program", "run", "shell", "steps", "target")

    def __init__(self, build: str, target: str, steps: tuple[Step, ...], inputs: tuple[str, ...], run: str,
                 program: str = "onitu make", shell: tuple[str, ...] = ("/bin/sh", "-c")) -> None:
        self.build, self.target, self.steps = build, target, steps
        self.inputs = inputs  # files the recipe reads, relative to the build dir (staged on other hosts)
        self.run = run  # the coordinator run that queued it: a restarted one serves files elsewhere (BuildInfo.run)
        self.program = program  # names make in the messages of the worker itself ("onitu make[1]: cc: ...")
        self.shell = shell  # what runs each line: $(SHELL) and the words of $(.SHELLFLAGS)

    def tuple(self, *, memory: bool = False) -> tuple:
        """The task as the space holds it; ``memory``: for a build's space in memory, the task itself (nothing
        leaves the process, so nothing is encoded, and :meth:`from_tuple` has nothing to check)."""
        if memory:
            return (TASK, self.build, self.target, self)
        return (TASK, self.build, self.target, {"steps": [s.wire() for s in self.steps], "inputs": list(self.inputs),
                                                 "run": self.run, "program": self.program,
                                                 "shell": list(self.shell)})

    @classmethod
    def from_tuple(cls, tup: Any) -> Task:
        if isinstance(tup, tuple) and len(tup) == 4 and isinstance(tup[3], Task):
            return tup[3]  # written by this process (see tuple)
        if not isinstance(tup, tuple) or len(tup) != 4 or tup[0] != TASK:
            raise BadTask(f"not a task tuple: {tup!r:.200}")
        _, build, target, spec = tup
        where = f"task {target!r:.100}"
        if not isinstance(build, str) or not isinstance(target, str) or not target:
            raise BadTask(f"{where}: bad build id or target")
        steps = []
        for step in _field(spec, "steps", list, where):
            if not (isinstance(step, list) and len(step) == 2 and isinstance(step[0], str)
                    and isinstance(step[1], bool)):
                raise BadTask(f"{where}: bad recipe step {step!r:.100}")
            steps.append(Step(step[0], step[1]))
        inputs = _field(spec, "inputs", list, where)
        if not all(isinstance(p, str) and p for p in inputs):
            raise BadTask(f"{where}: bad input list")
        program = spec.get("program", "onitu make")
        shell = spec.get("shell", ["/bin/sh", "-c"])
        if not (isinstance(shell, list) and shell and all(isinstance(w, str) and w for w in shell)):
            raise BadTask(f"{where}: bad shell {shell!r:.100}")
        return cls(build, target, tuple(steps), tuple(inputs), _field(spec, "run", str, where),
                   program if isinstance(program, str) else "onitu make", tuple(shell))


class BuildInfo:
    """The build-wide facts a worker reads once per build."""

    def __init__(self, build: str, run: str, dir: str, token_path: str, token: str,
                 env: dict[str, str], exports: dict[str, str], files: str | None, files_key: str | None,
                 secret: str | None) -> None:
        self.build = build
        self.run = run  # changes with every coordinator run of this build (the file server moves with it)
        self.dir = dir  # absolute build directory on the coordinator's host
        self.token_path = token_path  # a file only the coordinator's file system holds, whose content is token
        self.token = token
        self.env = env  # the coordinator's environment with the Makefile's exports: used when running in place
        self.exports = exports  # just the Makefile's exports: laid over a remote worker's own environment
        self.files = files  # the coordinator's file server endpoint (None: same-host workers only)
        self.files_key = files_key
        self.secret = secret

    def tuple(self) -> tuple:
        return (BUILD, self.build, {k: v for k, v in self.__dict__.items() if k != "build"})

    @classmethod
    def from_tuple(cls, tup: Any) -> BuildInfo:
        if not isinstance(tup, tuple) or len(tup) != 3 or tup[0] != BUILD or not isinstance(tup[1], str):
            raise BadTask(f"not a build tuple: {tup!r:.200}")
        info, where = tup[2], f"build {tup[1]}"
        strings = {k: _field(info, k, str, where) for k in ("run", "dir", "token_path", "token")}
        optional = {k: info.get(k) if isinstance(info, dict) else None for k in ("files", "files_key", "secret")}
        if not all(v is None or isinstance(v, str) for v in optional.values()):
            raise BadTask(f"{where}: bad file server fields")
        maps = {k: _field(info, k, dict, where) for k in ("env", "exports")}
        for name, m in maps.items():
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in m.items()):
                raise BadTask(f"{where}: {name} must map strings to strings")
        return cls(tup[1], **strings, **optional, **maps)


class StepResult:
    """What one recipe line did: its exit status and output."""

    __slots__ = ("err", "out", "status")

    def __init__(self, status: int, out: bytes, err: bytes) -> None:
        self.status, self.out, self.err = status, out, err

    def wire(self) -> list:
        return [self.status, self.out, self.err]


class Result:
    """A finished task: the steps that ran, and the files it produced (path, sha256, mode) when run remotely."""

    __slots__ = ("error", "outputs", "status", "steps", "worker")

    def __init__(self, status: int, steps: list[StepResult], outputs: list[tuple[str, str, int]], worker: str,
                 error: str | None = None) -> None:
        self.status = status  # 0, or the exit status of the first failing step not marked '-'
        self.steps, self.outputs, self.worker = steps, outputs, worker
        self.error = error  # the worker could not run the task at all (staging failed, bad task)

    def tuple(self, build: str, target: str, *, memory: bool = False) -> tuple:
        """The "done" tuple; ``memory``: holding the result itself, as :meth:`Task.tuple` does."""
        if memory:
            return (DONE, build, target, self)
        return (DONE, build, target, {"status": self.status, "steps": [s.wire() for s in self.steps],
                                      "outputs": [list(o) for o in self.outputs], "worker": self.worker,
                                      "error": self.error})

    @classmethod
    def from_wire(cls, body: Any, target: str) -> Result:
        if isinstance(body, Result):
            return body  # written by this process (see tuple)
        where = f"result of {target!r:.100}"
        steps = []
        for s in _field(body, "steps", list, where):
            if not (isinstance(s, list) and len(s) == 3 and isinstance(s[0], int) and isinstance(s[1], bytes)
                    and isinstance(s[2], bytes)):
                raise BadTask(f"{where}: bad step result")
            steps.append(StepResult(*s))
        outputs = []
        for o in _field(body, "outputs", list, where):
            if not (isinstance(o, list) and len(o) == 3 and isinstance(o[0], str) and isinstance(o[1], str)
                    and isinstance(o[2], int)):
                raise BadTask(f"{where}: bad output entry")
            outputs.append((o[0], o[1], o[2]))
        error = body.get("error")
        return cls(_field(body, "status", int, where), steps, outputs, _field(body, "worker", str, where),
                   error if isinstance(error, str) else None)
