"""Under `onitu start`, a template regex that backtracks forever neither freezes the primary nor makes the
watchdog fail over again and again (issue 12: epoch 2 -> 19 in 90 s, as the client re-sent it to each new primary)."""

from __future__ import annotations

import re
import threading
import time

import pytest

from onitu.space import connect
from onitu.space.errors import RegexTooSlow, RequestExpired


def test_a_runaway_regex_gets_an_error_and_the_pair_stays_put(onitu_factory):
    run = onitu_factory().start()
    epoch = run.status()["epoch"]
    with connect(data_dir=run.data, connect_timeout=10) as space:
        space.write(["s", "a" * 30 + "b"])
        started = time.monotonic()
        with pytest.raises(RegexTooSlow):  # timeout=None: the case; an error, not a retry
            space.take(["s", re.compile(r"(?=a)(a+)+$")], timeout=None)
        assert time.monotonic() - started < 2
        expired = []

        def wait() -> None:  # RE2 runs this one: no match, so it waits its 4 s without harm
            try:
                space.take(["s", re.compile(r"(a+)+$")], timeout=4)
            except RequestExpired:
                expired.append(True)

        blocked = threading.Thread(target=wait)
        blocked.start()
        time.sleep(5)
        blocked.join(5)
        assert expired
        assert space.read_all(["s", None]) == [("s", "a" * 30 + "b")]
    status = run.status()
    assert status["epoch"] == epoch and status["mode"] == "paired", status
    assert run.process("space-a")["restarts"] == 0 and run.process("space-a")["role"] == "primary"
