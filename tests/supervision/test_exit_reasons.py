"""Why a supervised process exited is said in ``onitu status``, and an agent's exit status is never taken for a
space server's stepping down (exit status 3)."""

from __future__ import annotations

import socket
from pathlib import Path

from onitu.supervision.supervisor import last_error
from tests.supervision.harness import Onitu


def test_an_api_port_already_taken_fails_the_api_with_the_reason_and_leaves_the_space_alone(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = Onitu(tmp_path, api=f"127.0.0.1:{port}")
        try:
            run.start()
            status = run.wait(lambda s: any(p["name"] == "api" and p["state"] == "failed"
                                            for p in s.get("processes", [])), 60, "the api marked failed")
            api = run.process("api")
            assert "Address already in use" in api["reason"] and f"127.0.0.1:{port}" in api["reason"], api
            assert "listen" in api["reason"], api
            assert "demoted" not in run.watchdog_log()
            assert all(p["restarts"] == 0 for p in status["processes"] if p["name"].startswith("space-")), status
            assert status["mode"] == "paired"
            assert "api.listen" in run.cli("status").stdout.replace("\n", "")
        finally:
            run.stop()
            run.kill_everything()


def test_last_error_is_the_last_logged_error_or_the_last_line_of_a_traceback(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("2026-01-01 10:00:00,000 INFO onitu.x: fine\n"
                   "2026-01-01 10:00:01,000 ERROR onitu.x: the disk is full\n"
                   "2026-01-01 10:00:02,000 INFO onitu.x: stopping\n")
    assert last_error(log) == "the disk is full"
    with log.open("a") as f:
        f.write('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nKeyError: \'plug\'\n')
    assert last_error(log) == "KeyError: 'plug'"
    assert last_error(tmp_path / "missing.log") == ""
    log.write_text("2026-01-01 10:00:00,000 INFO onitu.x: nothing wrong\n")
    assert last_error(log) == ""
