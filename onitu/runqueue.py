"""How long a thread has waited for a CPU: the run-queue wait Linux counts per thread.

A process that the machine's load keeps from running is not hung, and restarting it would only add to the load (a
referee restarted at 100,000 files reloads every record). So the heartbeat's patience and the watchdog's count of
missed answers measure the time a thread *could have used*: wall time less the time it spent runnable and waiting
for a CPU (the second field of ``/proc/PID/task/TID/schedstat``). A stopped, blocked or deadlocked thread does not
wait in the run queue, so it is caught as soon as before; a thread spinning forever is caught once it has had its
patience's worth of turns. Where the kernel does not count it (no ``/proc``, schedstats compiled out), the wait is
0 and patience is wall time as before.
"""

from __future__ import annotations

import os
import threading


def _schedstat(pid: int, tid: int | None) -> tuple[float, float]:
    """(seconds run on a CPU, seconds waited for one) by a thread since it started; zeros if unknown."""
    try:
        with open(f"/proc/{pid}/task/{tid or pid}/schedstat", "rb") as stat:
            fields = stat.read().split()
            return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0


def waited(pid: int, tid: int | None = None) -> float:
    """Seconds thread ``tid`` of process ``pid`` (its main thread by default) has spent waiting for a CPU since it
    started; 0.0 if unknown (gone, or not counted here)."""
    return _schedstat(pid, tid)[1]


class Starvation:
    """The run-queue wait of one thread since a mark: ``since_mark()`` is what to take off the wall time elapsed
    since ``mark()`` before calling the thread late."""

    def __init__(self, pid: int, tid: int | None = None) -> None:
        self.pid, self.tid = pid, tid
        self._ran_at_mark, self._at_mark = _schedstat(pid, tid)

    @classmethod
    def of_this_thread(cls) -> Starvation:
        """The thread that calls this."""
        return cls(os.getpid(), threading.get_native_id())

    def mark(self) -> None:
        """Count from now."""
        self._ran_at_mark, self._at_mark = _schedstat(self.pid, self.tid)

    def since_mark(self) -> float:
        """Seconds the thread waited for a CPU since the last :meth:`mark`."""
        return max(0.0, waited(self.pid, self.tid) - self._at_mark)

    def ran_since_mark(self) -> float:
        """Seconds the thread ran on a CPU since the last :meth:`mark` (0.0 if unknown)."""
        return max(0.0, _schedstat(self.pid, self.tid)[0] - self._ran_at_mark)
