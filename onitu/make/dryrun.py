"""``make -n``: GNU make's update algorithm with recipes printed instead of run.

As in GNU make, the lines that name ``$(MAKE)`` or start with ``+`` do run (a sub-make then prints what it would
do), a target whose recipe "ran" counts as brand new, and the intermediate files that would be deleted are listed
(``rm x.o``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from onitu.make.graph import Graph
from onitu.make.progress import Display
from onitu.make.recipe import location
from onitu.make.update import Update


def dry_run(graph: Graph, display: Display, env: Mapping[str, str], *, always: bool = False,
            keep_going: bool = False, ignore_errors: bool = False, settled: Mapping[str, bool] | None = None) -> int:
    """Print what a build would run (``settled``: what remaking the makefiles settled); returns make's exit
    status."""
    engine = Update(graph, always=always, keep_going=keep_going, dry_run=True, ignore_errors=ignore_errors,
                    report=display.message, goal_line=lambda stream, text: _goal_line(display, stream, text),
                    settled=settled)
    db = graph.db
    saved = db.expander.emit
    db.expander.emit = lambda stream, text: (display.out if stream == "out" else display.err)(text + "\n")
    try:
        engine.start()
        while (job := engine.next_job()) is not None:
            status = 0
            for command in job.commands:
                display.out(command.echo + "\n")
                if not command.force:
                    continue
                sys.stdout.flush()
                import subprocess  # here: most dry runs run nothing

                code = subprocess.run([*command.shell, command.text], cwd=Path(db.cwd), env=dict(env),
                                      check=False).returncode
                code = code if code >= 0 else 128 - code
                if code and command.ignore:
                    display.message(f"[{location(command, job.node.name)}] Error {code} (ignored)")
                elif code:
                    display.message(f"*** [{location(command, job.node.name)}] Error {code}")
                    status = code
                    break
            engine.job_done(job, status)
    finally:
        db.expander.emit = saved
    engine.close()
    names = engine.intermediates()
    if names:
        display.out("rm " + " ".join(names) + "\n")
    return engine.status()


def _goal_line(display: Display, stream: str, text: str) -> None:
    if stream == "out":
        display.out(f"{display.program}: {text}\n")
    else:
        display.message(text)
