"""One ``onitu make`` run: its builds (remaking the makefiles, then the goals) and the space and workers they
share, started only once a recipe must run (a build with nothing to do starts nothing)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from onitu.logs import lazy_logger
from onitu.make.coordinator import BuildOptions, Coordinator, goal_printer, remove_intermediates
from onitu.make.database import Database
from onitu.make.graph import Graph
from onitu.make.jobserver import ENV, Address, Jobserver
from onitu.make.options import Options
from onitu.make.progress import Display
from onitu.make.runtime import Runtime
from onitu.make.tasks import BuildInfo
from onitu.make.update import Update

if TYPE_CHECKING:
    from onitu.make.files import FileServer

log = lazy_logger(__name__)


class Special:
    """How a build differs while remaking makefiles."""

    def __init__(self) -> None:
        self.dontcare: set[str] = set()  # -include'd makefiles: failing is not an error
        self.goal_errors: dict[str, str] = {}  # required makefiles not found: their error line


class Session:
    """The builds of one ``onitu make`` run, in ``build_dir``, and the runtime they share."""

    def __init__(self, opts: Options, build_dir: Path, display: Display, environ: Mapping[str, str], *,
                 jobs_on_command_line: bool) -> None:
        self.opts, self.dir, self.ui, self.environ = opts, build_dir, display, environ
        self._id: str | None = None
        data = opts.onitu.get("data")
        self.data_dir = Path(str(data)) if data else None
        address = Address.decode(environ.get(ENV, "")) if not jobs_on_command_line else None
        self.sub_make = address
        self.rt: Runtime | None = None
        self.jobserver: Jobserver | None = None
        self.limit: int | None = None
        self.files: FileServer | None = None
        self.builds = 0
        self.remade: dict[str, bool] = {}  # what the last makefile build settled (key -> failed), for the goals

    @property
    def id(self) -> str:
        """The build's name in the space: the same command in the same directory is the same build (so a
        restarted coordinator finds its tasks); a build in memory needs no such name."""
        if self._id is None:
            self._id = _build_id(self.dir, self.opts.makefiles, self.opts.goals, self.opts.variables)
        return self._id

    def build(self, graph: Graph, env: dict[str, str], *, special: Special | None = None) -> int:
        """Bring ``graph``'s goals up to date (``special``: they are makefiles); returns make's exit status."""
        opts = self.opts
        is_goals = special is None
        quiet = opts.silent or not is_goals  # GNU says nothing about makefiles it remade
        special = special or Special()
        build_opts = BuildOptions(jobs=None, keep_going=opts.keep_going, always=opts.always, silent=opts.silent,
                                  ignore_errors=opts.ignore_errors, quiet_goals=quiet)
        engine = Update(graph, always=opts.always, keep_going=opts.keep_going, ignore_errors=opts.ignore_errors,
                        report=self.ui.message, goal_line=goal_printer(self.ui), quiet_goals=build_opts.quiet_goals,
                        dontcare=special.dontcare, goal_errors=special.goal_errors,
                        report_raw=lambda line: self.ui.err(line + "\n"),
                        settled=self.remade if is_goals else None)
        engine.start()
        self.builds += 1
        try:
            return self._run(engine, graph, env, build_opts)
        finally:
            if not is_goals:
                self.remade = engine.settled()

    def _run(self, engine: Update, graph: Graph, env: dict[str, str], build_opts: BuildOptions) -> int:
        if not engine.has_work():
            engine.close()
            remove_intermediates(engine, self.dir, self.ui, self.opts.silent)
            return engine.status()
        rt = self._runtime(graph.db)
        build_opts.jobs = self.limit
        if graph.db.not_parallel:
            build_opts.jobs = 1
        info = self._info(env, f"{self.id if rt.kind != 'memory' else 'local'}.{self.builds}")
        sub_env = None
        if rt.kind != "memory":
            address = self.sub_make or Address(rt.endpoints, self.id, self.limit is not None, rt.insecure)
            sub_env = {ENV: address.encode()}
        coordinator = Coordinator(graph, info, rt, build_opts, self.ui, self.files.store if self.files else None,
                                  engine=engine, jobserver=self.jobserver if not graph.db.not_parallel else None,
                                  sub_make_env=sub_env)
        with self.ui:
            return coordinator.run()

    def _runtime(self, db: Database) -> Runtime:
        if self.rt is not None:
            return self.rt
        opts = self.opts
        space = opts.onitu.get("space")
        self.rt = Runtime(lambda: self.id, space=space if isinstance(space, str) else None, data_dir=self.data_dir,
                          insecure=bool(opts.onitu.get("insecure")), recursive=_recursive(db),
                          sub_make=self.sub_make)
        rt = self.rt
        slots = (os.cpu_count() or 1) if opts.jobs == 0 else (opts.jobs or 1)
        if self.sub_make is not None:
            self.jobserver = Jobserver(rt.client, self.sub_make.root, limited=self.sub_make.limited, top=False)
            return rt
        if rt.embedded_space or rt.worker_slots() == 0:
            rt.start_workers(slots)  # our own workers: -j N slots (like make -j N; -j alone: one per CPU)
            self.limit = slots
        else:
            self.limit = opts.jobs or None  # workers are running: -j N caps the tasks in flight
        if rt.kind != "memory":
            self.jobserver = Jobserver(rt.client, self.id, limited=self.limit is not None, top=True,
                                       jobs=self.limit or 1)
            self.files = _file_server(rt, self.dir, rt.state_dir, opts.onitu.get("files-listen"))
        return rt

    def _info(self, env: dict[str, str], build: str) -> BuildInfo:
        # a worker on another host keeps its own environment, plus what the Makefile and command line set
        changed = {k: v for k, v in env.items() if self.environ.get(k) != v}
        files = self.files
        token_path, token = "", ""
        if self.rt is not None and self.rt.kind != "memory":
            self.rt.state_dir.mkdir(parents=True, exist_ok=True)
            path = self.rt.state_dir / "token"
            if not path.exists():
                path.write_text(os.urandom(16).hex())
            token_path, token = str(path), path.read_text()
        return BuildInfo(build, os.urandom(8).hex(), str(self.dir), token_path, token, env, changed,
                         files.endpoint if files else None, files.public.decode() if files else None,
                         files.secret if files else None)

    def close(self, status: int) -> None:
        """Release the runtime; a finished build leaves no state behind (a failed or killed one keeps it)."""
        if self.jobserver is not None:
            self.jobserver.close()
        if self.files is not None:
            self.files.close()
            log.info("files: sent %d input(s) (%d bytes) to remote workers, received %d output(s) (%d bytes)",
                     *self.files.sent, *self.files.received)
        if self.rt is not None:
            self.rt.close()
        if status == 0 and self.rt is not None and self.rt.kind != "memory":
            import shutil

            shutil.rmtree(self.rt.state_dir, ignore_errors=True)

    def interrupt(self) -> None:
        if self.rt is not None:
            self.rt.interrupt()


def _recursive(db: Database) -> bool:
    """Does some recipe name $(MAKE)? Then sub-makes will want to join this build through a served space."""
    recipes = [e.recipe for e in db.entries.values()] + [r.recipe for r in db.patterns]
    recipes += [c.recipe for e in db.entries.values() for c in e.colons or []]
    if db.default_recipe:
        recipes.append(db.default_recipe)
    return any("$(MAKE)" in line.text or "${MAKE}" in line.text for recipe in recipes if recipe for line in recipe)


def _build_id(build_dir: Path, makefiles: list[str], goals: list[str], overrides: dict[str, str]) -> str:
    import hashlib

    key = "\0".join([os.uname().nodename, str(build_dir), *makefiles, "\0", *goals, "\0",
                     *sorted(f"{k}={v}" for k, v in overrides.items())])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _file_server(rt: Runtime, build_dir: Path, state: Path, listen: object) -> FileServer | None:
    """Serve build files to workers on other hosts, on the address that faces the space (tcp spaces only)."""
    import socket
    from urllib.parse import urlsplit

    tcp = [urlsplit(ep) for ep in rt.endpoints if ep.startswith("tcp://")]
    if not isinstance(listen, str):
        if rt.embedded_space or not tcp:
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # no packet sent: this only picks a route
            s.connect((tcp[0].hostname or "127.0.0.1", tcp[0].port or 1))
            listen = f"tcp://{s.getsockname()[0]}:0"
    from onitu.make.files import BlobStore, FileServer

    return FileServer(build_dir, BlobStore(state / "blobs"), listen)
