"""The watchdog's request for a process's stacks (SIGUSR1, see onitu.heartbeat.STACKS) goes only to a process that
runs: a stopped one would act on it once continued, from a signal handler walking threads that run on meanwhile
(a fenced space primary, SIGSTOPped then continued, died of SIGSEGV there instead of stepping down)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from onitu.config import HeartbeatConfig, RestartConfig
from onitu.heartbeat import STACKS
from onitu.supervision.supervisor import RUNNING, Child, Spec, Supervisor


def pending(pid: int) -> int:
    """The signals pending for process ``pid`` as a whole (a bit mask)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no ShdPnd for {pid}")


def test_a_stopped_process_is_not_asked_for_its_stacks_a_running_one_is(tmp_path):
    sup = Supervisor(tmp_path, HeartbeatConfig(), RestartConfig())
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        stopped, running = (Child(Spec(f"p{i}", ["sleep", "60"], heartbeat=True), RUNNING, proc, proc.pid)
                            for i, proc in enumerate(procs))
        os.kill(stopped.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{stopped.pid}/stat").read_text().split()[2] != "T":
            assert time.monotonic() < deadline, "the process did not stop"
            time.sleep(0.01)
        sup.ask_for_stacks(stopped, wait=False)
        assert not pending(stopped.pid) & (1 << (STACKS - 1)), "a stopped process was sent the stacks request"
        sup.ask_for_stacks(running, wait=False)
        assert procs[1].wait(5) == -STACKS, "a running one gets it (sleep, not speaking the protocol, dies of it)"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        sup.close()
