"""``onitu make``: GNU make's command line, messages and exit codes, around the coordinator."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from onitu.logs import lazy_logger
from onitu.make.jobserver import ENV
from onitu.make.options import Options, UsageError, parse, parse_makeflags
from onitu.make.progress import Display
from onitu.make.runtime import BuildLocked, WorkersFailing
from onitu.make.worker import worker_main
from onitu.space import SpaceError

if TYPE_CHECKING:
    from onitu.make.database import Database

__all__ = ["make_main", "worker_main"]

log = lazy_logger(__name__)
PROGRAM = "onitu make"
USAGE = f"Usage: {PROGRAM} [options] [target] ...  (GNU make's options; --space, --data, --insecure, --files-listen)"


def make_main(argv: list[str], *, cwd: Path | None = None, environ: Mapping[str, str] | None = None,
              sink: Callable[[str, str], None] | None = None) -> int:
    """Entry point of ``onitu make``; returns the exit status. ``cwd``, ``environ`` and ``sink`` (where output
    goes) stand in for the process's own, for tests and embedding."""
    environ = os.environ if environ is None else environ
    level = _level(environ.get("MAKELEVEL", "0"))
    program = PROGRAM if level == 0 else f"{PROGRAM}[{level}]"
    try:
        opts = parse(argv, parse_makeflags(environ.get("MAKEFLAGS", ""), Options()))
        jobs_on_command_line = parse(argv).jobs is not None
    except UsageError as exc:
        print(f"{program}: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    if opts.help:
        print(USAGE)
        return 0
    if opts.version:
        print("onitu make (GNU make 4.3 compatible)")
        return 0
    build_dir = cwd or Path.cwd()
    for directory in opts.directories:
        build_dir = build_dir / directory
    build_dir = build_dir.resolve()
    opts.print_directory = (opts.print_directory or (not opts.silent and (bool(opts.directories) or level > 0))) \
        and not opts.no_print_directory
    display = Display(program, live=False if level else None, sink=sink)  # one status line: the top make's
    started_in = os.getcwd()
    try:
        os.chdir(build_dir)  # as GNU make does for -C: recipes run here, and start cheaper from here
    except OSError as exc:
        display.message(f"*** {build_dir}: {exc.strerror}.  Stop.")
        return 2
    if opts.print_directory:
        display.out(f"{program}: Entering directory '{build_dir}'\n")
    try:
        status = _make(opts, build_dir, display, level, jobs_on_command_line, environ)
    except KeyboardInterrupt:
        display.message("*** Interrupted.")
        return 130
    finally:
        os.chdir(started_in)
    if opts.print_directory:
        display.out(f"{program}: Leaving directory '{build_dir}'\n")
    return status


def _level(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _make(opts: Options, build_dir: Path, display: Display, level: int, jobs_on_command_line: bool,
          environ: Mapping[str, str]) -> int:
    from onitu.make.graph import Graph
    from onitu.make.parser import MakeError, load
    from onitu.make.remake import GO, RESTART, remake_makefiles
    from onitu.make.session import Session

    session = Session(opts, build_dir, display, environ, jobs_on_command_line=jobs_on_command_line)
    status = 2
    restarts = 0
    try:
        while True:
            db = load(opts.makefiles or None, cwd=build_dir, overrides=opts.variables, environ=environ,
                      goals=opts.goals, make_command=PROGRAM, options=opts, restarts=restarts,
                      emit=lambda stream, text: (display.out if stream == "out" else display.err)(text + "\n"))
            for warning in db.warnings():
                display.err(warning + "\n")
            env = _environment(db, opts, level, environ)
            outcome = remake_makefiles(db, session, env)
            if outcome == RESTART:
                restarts += 1
                continue
            if outcome != GO:
                status = int(outcome)
                break
            graph = Graph.build(db, opts.goals)
            for message in graph.messages:
                display.message(message)
            if opts.dry_run:
                from onitu.make.dryrun import dry_run  # here: a build that runs its recipes never needs it

                status = dry_run(graph, display, env, always=opts.always, keep_going=opts.keep_going,
                                 ignore_errors=opts.ignore_errors, settled=session.remade)
            else:
                status = session.build(graph, env)
            break
    except MakeError as exc:
        text = str(exc).replace(f"{PROGRAM}:", f"{display.program}:")
        display.err((text if exc.file else f"{display.program}: {text}") + "\n")
        status = 2
    except (BuildLocked, WorkersFailing, SpaceError) as exc:
        display.message(f"*** {exc}")
        status = 2
    except KeyboardInterrupt:
        session.interrupt()
        raise
    finally:
        session.close(status)
    return status


def _environment(db: Database, opts: Options, level: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The recipes' environment: the makefile's exports, MAKELEVEL one up, MAKEFLAGS and MFLAGS for sub-makes."""
    said = parse_makeflags(db.expander.value_of("MAKEFLAGS"), Options(**{**opts.__dict__, "variables": {}}))
    said.variables = dict(opts.variables)
    env = {**db.exports(), "MAKELEVEL": str(level + 1)}
    env["MAKEFLAGS"] = said.makeflags()
    mflags = said.mflags()
    if mflags:
        env["MFLAGS"] = mflags
    else:
        env.pop("MFLAGS", None)
    if ENV in environ:
        env[ENV] = environ[ENV]  # a sub-make's own sub-makes join the same build
    return env
