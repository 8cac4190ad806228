"""onitu.logs: logging configured only once something loads it, and never an unformatted record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROGRAM = """
import sys
from onitu.logs import configure_logging, lazy_logger
configure_logging(when_loaded=True)
lazy_logger("quiet").info("below the level: dropped")
print("loaded" if "logging" in sys.modules else "not loaded", flush=True)
import logging
logging.getLogger("direct").warning("first record")
lazy_logger("lazy").error("second record %d", 2)
"""


def run(program: str, *, level: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ONITU_LOG"}
    if level:
        env["ONITU_LOG"] = level
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, check=True,
                          cwd=Path(__file__).resolve().parents[1])


def test_logging_is_configured_when_first_imported_by_anyone():
    proc = run(PROGRAM)
    assert proc.stdout == "not loaded\n"  # an info record at the default level loads nothing
    lines = proc.stderr.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["WARNING direct: first record", "ERROR lazy: second record 2"]


def test_the_level_comes_from_onitu_log():
    proc = run(PROGRAM.replace('"quiet").info(', '"verbose").info('), level="info")
    assert proc.stdout == "loaded\n"
    assert proc.stderr.splitlines()[0].endswith(" INFO verbose: below the level: dropped")


def test_a_build_in_memory_loads_neither_logging_nor_dataclasses(tmp_path):
    (tmp_path / "Makefile").write_text("out.txt:\n\techo built > $@\n")
    program = ("import sys\nfrom onitu.logs import configure_logging\nconfigure_logging(when_loaded=True)\n"
               "from onitu.make.cli import make_main\n"
               f"assert make_main(['-C', {str(tmp_path)!r}]) == 0\n"
               "print('loaded:', sorted(m for m in ('logging', 'dataclasses', 'asyncio', 'zmq') if m in sys.modules))")
    assert "loaded: []" in run(program).stdout.splitlines()  # each cost a share of every build's start-up
    assert (tmp_path / "out.txt").read_text() == "built\n"
