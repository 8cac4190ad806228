"""Client processes for multi-process tests: `python -m tests.procs MODE ENDPOINT ...`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from onitu.space import connect


def taker(endpoint: str, count: str) -> None:
    with connect(endpoint) as space:
        print("ready", flush=True)
        for _ in range(int(count)):
            print(json.dumps(list(space.take(["job", int], timeout=60))), flush=True)


def leaser(endpoint: str, ttl: str) -> None:
    space = connect(endpoint, session_ttl=float(ttl))
    space.write(["lease", os.getpid()], lease="session")
    print("ready", flush=True)
    time.sleep(3600)  # until killed




def churn(endpoint: str, name: str, log_path: str, stop_path: str) -> None:
    """Write and take until told to stop; log each operation only after the space acknowledged it."""
    import random

    rng = random.Random(name)
    target = {"data_dir": Path(endpoint[5:])} if endpoint.startswith("data:") else {"endpoint": endpoint}
    with connect(**target, connect_timeout=120) as space, open(log_path, "a") as log:
        print("ready", flush=True)
        i = 0
        while not os.path.exists(stop_path):
            if rng.random() < 0.6:
                space.write(["d", name, i])
                log.write(json.dumps(["w", "d", name, i]) + "\n")
                i += 1
            else:
                try:
                    got = space.take(["d", None, None], timeout=0)
                except Exception as exc:
                    if type(exc).__name__ != "RequestExpired":
                        raise
                    continue
                log.write(json.dumps(["t", *got]) + "\n")
            log.flush()


def committer(db_path: str, wal_limit: str) -> None:
    """Commit turns of 60 lasting tuples to a space's disk, as a loaded server does, printing each turn's number once
    it is committed (acknowledged), until killed."""
    from onitu.space.durable import Durable

    durable = Durable(Path(db_path), wal_limit=int(wal_limit))
    for turn in range(1 << 30):
        puts = [[turn * 60 + i, os.urandom(200), None, None] for i in range(60)]
        durable.commit([puts, [], [], []], [(b"s", turn, b"r" * 60)], {b"s": turn} if turn % 10 == 0 else {})
        print(turn, flush=True)
        time.sleep(0.001)  # the rest of a server's turn: receiving, applying, replying


def heartbeat_agent(block_file: str) -> None:
    """Answers the watchdog from its event loop, until `block_file` appears: then the loop gets stuck."""
    import asyncio

    from onitu.heartbeat import Responder

    async def main() -> None:
        responder = Responder.from_env(lambda: {"role": "agent"})
        responder.attach(asyncio.get_running_loop())
        while not os.path.exists(block_file):
            await asyncio.sleep(0.05)
        os.unlink(block_file)  # only this instance gets stuck, not the one restarted after it
        time.sleep(3600)  # stuck: the loop never runs again

    asyncio.run(main())


def gil_agent(block_file: str) -> None:
    """Answers the watchdog from a :class:`Liveness` thread while its main thread beats, until ``block_file``
    appears: then the main thread enters a C call that holds the GIL for minutes (a regular expression that
    backtracks), so the heartbeat thread cannot answer, as a huge sort or collection of garbage would do."""
    import re

    from onitu.heartbeat import Liveness

    liveness = Liveness(lambda: {"role": "agent"})
    while not os.path.exists(block_file):
        liveness.beat()
        time.sleep(0.05)
    os.unlink(block_file)  # only this instance gets stuck, not the one restarted after it
    hold_the_gil(re)


def gil_step_agent(trigger: str, done: str) -> None:
    """Answers the watchdog from a :class:`Liveness` thread while its main thread beats; once ``trigger`` appears,
    holds the GIL in one C call for a few seconds of CPU (as freeing or collecting millions of objects does), writes
    the CPU seconds it took into ``done``, and carries on."""
    from onitu.heartbeat import Liveness

    liveness = Liveness(lambda: {"role": "agent"})
    while True:
        liveness.beat()
        if os.path.exists(trigger):
            os.unlink(trigger)
            began = time.thread_time()  # CPU time: a loaded machine stretches the wall time, not this
            sum(range(2_000_000))
            rate = 2_000_000 / max(time.thread_time() - began, 1e-6)
            began = time.thread_time()
            sum(range(int(4 * rate)))  # 4 s of CPU in a C loop over a C iterator: never lets another thread run
            Path(done).write_text(str(time.thread_time() - began))
        time.sleep(0.05)


def busy_agent(trigger: str, done: str) -> None:
    """Beats a :class:`Liveness` of 1 s patience; once ``trigger`` appears, spends 4 s in a step that cannot beat
    (declared with ``busy()``), writes ``done``, and carries on."""
    from onitu.heartbeat import Liveness

    liveness = Liveness(lambda: {"role": "agent"}, patience=1.0)
    while True:
        liveness.beat()
        if os.path.exists(trigger):
            os.unlink(trigger)
            with liveness.busy():
                time.sleep(4)
            Path(done).touch()
        time.sleep(0.05)


def hold_the_gil(re: Any) -> None:
    re.fullmatch(r"(a|aa)+b", "a" * 60)


def starved_agent(kind: str, trigger: str, done: str) -> None:
    """Answers the watchdog (``kind``: from its event loop, or from a :class:`Liveness` thread while the main thread
    beats). Once ``trigger`` appears, six busy processes start on one CPU; then its main thread joins them there and
    works 0.5 s of CPU without answering or beating, writes the wall time that took into ``done``, and carries on."""
    import asyncio
    import subprocess

    from onitu.heartbeat import Liveness, Responder

    cpu = min(os.sched_getaffinity(0))

    def hogs() -> list[subprocess.Popen]:
        hog = f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
        return [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(6)]

    def starved_work(busy: list[subprocess.Popen]) -> None:
        try:
            os.sched_setaffinity(0, {cpu})
            started, spun = time.monotonic(), time.thread_time()
            while time.thread_time() - spun < 0.5:
                pass
            Path(done).write_text(f"{time.monotonic() - started:.2f}")
        finally:
            for proc in busy:
                proc.kill()

    def triggered() -> bool:
        if not os.path.exists(trigger):
            return False
        os.unlink(trigger)
        return True

    if kind == "liveness":
        liveness = Liveness(lambda: {"role": "agent"}, patience=1.0)
        while True:
            liveness.beat()
            if triggered():
                busy = hogs()
                for _ in range(10):  # all spinning
                    liveness.beat()
                    time.sleep(0.05)
                starved_work(busy)
            time.sleep(0.05)

    async def main() -> None:
        Responder.from_env(lambda: {"role": "agent"}).attach(asyncio.get_running_loop())
        while True:
            if triggered():
                busy = hogs()
                await asyncio.sleep(0.5)  # all spinning
                starved_work(busy)  # on the loop: it answers nothing meanwhile
            await asyncio.sleep(0.05)

    asyncio.run(main())


MODES = {"taker": taker, "leaser": leaser, "churn": churn, "committer": committer, "heartbeat_agent": heartbeat_agent,
         "starved_agent": starved_agent, "gil_agent": gil_agent,
         "busy_agent": busy_agent, "gil_step_agent": gil_step_agent}


if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
