"""``onitu make`` (GNU make's options and exit codes) and ``onitu worker``."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from onitu import paths
from onitu.make.files import BlobStore, FileServer
from onitu.make.progress import Display
from onitu.make.runtime import BuildLocked, Runtime, WorkersFailing, embedded_endpoint, fork_worker, will_embed
from onitu.make.tasks import BuildInfo
from onitu.space import SpaceError

log = logging.getLogger(__name__)
PROGRAM = "onitu make"
WORKER_TTL = 1.2  # a dead worker's claims vanish this long after its last keepalive: task re-run in < 2 s


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROGRAM, description="A distributed GNU make: recipes run on onitu workers.",
                                epilog="VAR=value arguments override the Makefile's variables.")
    p.add_argument("-f", "--file", "--makefile", dest="makefile", help="read FILE as the Makefile")
    p.add_argument("-C", "--directory", dest="directory", help="change to DIR before doing anything")
    p.add_argument("-j", "--jobs", nargs="?", const=0, type=int, default=None,
                   help="run N recipes at once (no N: as many as the workers have slots)")
    p.add_argument("-k", "--keep-going", action="store_true", help="keep going when some targets can't be made")
    p.add_argument("-n", "--just-print", "--dry-run", "--recon", dest="dry_run", action="store_true",
                   help="print the recipes that would run, without running them")
    p.add_argument("-B", "--always-make", dest="always", action="store_true", help="make every target")
    p.add_argument("-s", "--silent", "--quiet", dest="silent", action="store_true", help="don't echo recipes")
    p.add_argument("--space", help="the space to use (default: $ONITU_SPACE, the local one, else an embedded one)")
    p.add_argument("--data", type=Path, help="data directory (default: $ONITU_DATA or the user data dir)")
    p.add_argument("--insecure", action="store_true", help="plain tcp:// to a server run with --insecure-loopback")
    p.add_argument("--files-listen", help="where remote workers fetch inputs (default: the address facing the space)")
    p.add_argument("args", nargs="*", metavar="TARGET|VAR=value")
    return p


def make_main(argv: list[str]) -> int:
    """Entry point of ``onitu make``; returns the exit status."""
    from onitu.make.driver import Driver, Options, mtime_of
    from onitu.make.graph import Graph
    from onitu.make.parser import MakeError, load

    args = _parser().parse_args(argv)
    goals = [a for a in args.args if "=" not in a]
    overrides = dict(a.split("=", 1) for a in args.args if "=" in a)
    build_dir = Path(args.directory or ".").resolve()
    display = Display(PROGRAM)
    if args.directory:
        print(f"{PROGRAM}: Entering directory '{build_dir}'", flush=True)
    build = _build_id(build_dir, args.makefile, goals, overrides)
    data = args.data or paths.data_dir()
    state = data / "make" / build
    forked = None
    if not args.dry_run and will_embed(args.space, data):  # start the worker now, while the Makefile is read
        slots = (os.cpu_count() or 1) if args.jobs == 0 else (args.jobs or 1)
        forked = (fork_worker(embedded_endpoint(build), slots), slots)
    try:
        db = load(args.makefile, cwd=build_dir, overrides=overrides, environ=os.environ, goals=goals,
                  make_command=PROGRAM)
        for warning in db.warnings():
            display.err(warning + "\n")
        graph = Graph.build(db, goals)
        if args.dry_run:
            out, err = graph.dry_run(args.always, lambda name: mtime_of(build_dir / name))
            display.out("".join(line + "\n" for line in out))
            display.err("".join(line + "\n" for line in err))
            return 0
        # exports() is the recipes' whole environment (unexported variables left out), as GNU make builds it
        env = {**db.exports(), "MAKELEVEL": str(int(os.environ.get("MAKELEVEL", "0") or 0) + 1)}
        with Runtime(build, state, space=args.space, data_dir=args.data, insecure=args.insecure,
                     forked=forked) as rt, display:
            jobs = _jobs(args.jobs, rt)
            files = _file_server(rt, build_dir, state, args.files_listen)
            try:
                # a worker on another host keeps its own environment, plus what the Makefile and command line set
                changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
                info = _build_info(build, build_dir, state, env, changed, files)
                opts = Options(jobs=jobs, keep_going=args.keep_going, always=args.always, silent=args.silent)
                status = Driver(graph, info, rt, opts, display, files.store if files else None).run()
            finally:
                if files:
                    files.close()
                    log.info("files: sent %d input(s) (%d bytes) to remote workers, received %d output(s) "
                             "(%d bytes)", *files.sent, *files.received)
    except MakeError as exc:
        print(str(exc) if exc.file else f"{PROGRAM}: {exc}", file=sys.stderr)
        _reap(forked)
        return 2
    except (BuildLocked, WorkersFailing, SpaceError) as exc:
        print(f"{PROGRAM}: *** {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROGRAM}: *** Interrupted.", file=sys.stderr)
        return 130
    if args.directory:
        print(f"{PROGRAM}: Leaving directory '{build_dir}'", flush=True)
    if status == 0:
        _forget(state)
    return status


def _reap(forked: tuple[int, int] | None) -> None:
    """Stop a worker forked early for a build that never started (a bad Makefile)."""
    if forked:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(forked[0], signal.SIGKILL)
            os.waitpid(forked[0], 0)


def _build_id(build_dir: Path, makefile: str | None, goals: list[str], overrides: dict[str, str]) -> str:
    """The same command in the same directory is the same build: a restarted driver finds its tasks."""
    key = "\0".join([socket.gethostname(), str(build_dir), makefile or "", *goals, "\0",
                     *sorted(f"{k}={v}" for k, v in overrides.items())])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _jobs(given: int | None, rt: Runtime) -> int | None:
    """How many tasks may be in flight. With no worker registered, start local ones with -j N slots (like make -j
    N; -j alone: one per CPU) and let their slots be the limit. With workers running, -j N caps the tasks in
    flight; no -j means as many as their slots take.
    """
    if rt.embedded or rt.worker_slots() == 0:
        rt.start_workers((os.cpu_count() or 1) if given == 0 else (given or 1))
        return None
    return given or None


def _file_server(rt: Runtime, build_dir: Path, state: Path, listen: str | None) -> FileServer | None:
    """Serve build files to workers on other hosts, on the address that faces the space (tcp spaces only)."""
    tcp = [urlsplit(ep) for ep in rt.endpoints if ep.startswith("tcp://")]
    if listen is None:
        if rt.embedded or not tcp:
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # no packet sent: this only picks a route
            s.connect((tcp[0].hostname or "127.0.0.1", tcp[0].port or 1))
            listen = f"tcp://{s.getsockname()[0]}:0"
    return FileServer(build_dir, BlobStore(state / "blobs"), listen)


def _build_info(build: str, build_dir: Path, state: Path, env: dict[str, str], exports: dict[str, str],
                files: FileServer | None) -> BuildInfo:
    token_path = state / "token"
    if not token_path.exists():
        token_path.write_text(secrets.token_hex(16))
    return BuildInfo(build, secrets.token_hex(8), str(build_dir), str(token_path), token_path.read_text(), env, exports,
                     files.endpoint if files else None, files.public.decode() if files else None,
                     files.secret if files else None)


def _forget(state: Path) -> None:
    """A finished build leaves nothing behind (a failed or killed one keeps its state, to resume)."""
    import shutil

    shutil.rmtree(state, ignore_errors=True)


def _worker_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onitu worker", description="Run make tasks from the space until stopped: "
                                "SIGTERM finishes the tasks under way first, SIGINT kills them (they are re-run).")
    p.add_argument("--space", help="endpoint(s) of the space (default: $ONITU_SPACE, the local one, or discovery)")
    p.add_argument("--slots", type=int, default=1, help="tasks run at once (default 1)")
    p.add_argument("--data", type=Path, help="data directory, for keys (default: $ONITU_DATA)")
    p.add_argument("--insecure", action="store_true", help="plain tcp:// to a server run with --insecure-loopback")
    p.add_argument("--cache", type=Path, help="where fetched inputs are cached (default: in the temp dir)")
    p.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # a driver's local worker dies with it
    return p


def worker_main(argv: list[str]) -> int:
    """Entry point of ``onitu worker``."""
    from onitu.make.worker import Worker
    from onitu.space.connect import connect

    args = _worker_parser().parse_args(argv)
    if args.slots < 1:
        print("onitu worker: --slots must be at least 1", file=sys.stderr)
        return 2
    if args.parent:
        threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    try:
        client = connect(args.space, data_dir=args.data, insecure=args.insecure, session_ttl=WORKER_TTL)
    except SpaceError as exc:
        print(f"onitu worker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    worker = Worker(client, slots=args.slots, cache=args.cache)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop(abort=True))
    try:
        worker.run()
    finally:
        with contextlib.suppress(SpaceError):
            client.close()
    if worker.revoked is not None:
        print(f"onitu worker: stopped: {worker.revoked}", file=sys.stderr)
        return 1
    return 0


def _watch_parent(parent: int) -> None:
    """A driver's worker dies with it: SIGINT to itself, which kills the recipes under way."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGINT)
