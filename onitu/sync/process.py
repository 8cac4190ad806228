"""What the referee and the plugs share as processes: arguments, config, a space to reach, signals."""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from onitu import gcpolicy, heaptrim
from onitu.config import Config
from onitu.heartbeat import Liveness
from onitu.space.client import SpaceClient
from onitu.space.errors import Unavailable

CONNECT_PATIENCE = 30.0  # seconds to wait for a space that is (re)starting under the same watchdog


class Runner(Protocol):
    def run(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


def connect_patiently(endpoint: str | None, config: Config, session_ttl: float) -> SpaceClient:
    """A client of the config's space; while the watchdog restarts it, wait instead of failing at once."""
    from onitu.space import connect

    deadline = time.monotonic() + CONNECT_PATIENCE
    while True:
        try:
            return connect(endpoint, data_dir=config.data, session_ttl=session_ttl)
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def serve(prog: str, doc: str, make: Callable[[Config, SpaceClient, argparse.Namespace], Runner],
          argv: list[str] | None, session_ttl: float = 3.0,
          arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None) -> int:
    """Parse the arguments, load the config, connect, and run ``make(...)`` until SIGTERM or Ctrl-C."""
    from onitu import config as config_mod
    from onitu.logs import configure_logging

    configure_logging("INFO")
    gcpolicy.for_big_tables()
    heaptrim.after_bursts()
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--space", default=os.environ.get("ONITU_SPACE"))
    arguments(parser)
    args = parser.parse_args(argv)
    config = config_mod.load(args.config or config_mod.default_path())
    # answering the watchdog meanwhile: a space loading a million rows takes longer than the startup grace
    waiting = Liveness(lambda: {"starting": "waiting for the space"}, patience=CONNECT_PATIENCE)
    try:
        space = connect_patiently(args.space, config, session_ttl)
    finally:
        waiting.close()
    runner = make(config, space, args)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    try:
        runner.run()
    except KeyboardInterrupt:
        pass
    finally:
        runner.close()
        space.close()
    return 0
