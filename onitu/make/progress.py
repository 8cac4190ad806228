"""What a build shows while it runs: recipe echoes and output as GNU make prints them, plus a progress line.

On a terminal a rich status line (tasks done/running/queued, workers) stays under the output; when piped, the
output is exactly make's (GNU's, line for line), and the progress is logged at info level every ``PLAIN_EVERY``
seconds of a long build (``ONITU_LOG=info``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from onitu.logs import lazy_logger

if TYPE_CHECKING:
    from rich.live import Live

log = lazy_logger(__name__)

PLAIN_EVERY = 10.0


class Counts:
    """What the status line says."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.running = 0  # handed to workers (queued in the space or being run)
        self.workers = 0  # worker slots in the space

    def line(self) -> str:
        waiting = self.total - self.done - self.running
        return (f"{self.done}/{self.total} targets done, {self.running} with workers, {waiting} waiting; "
                f"{self.workers} worker slot{'s' if self.workers != 1 else ''}")


class Display:
    """Routes build output and shows progress; use as a context manager."""

    def __init__(self, program: str, live: bool | None = None, sink: Callable[[str, str], None] | None = None) -> None:
        """``sink(stream, text)``: where output goes instead of stdout and stderr (tests, embedding)."""
        self.program = program
        self.sink = sink
        self.live_mode = (sys.stderr.isatty() and sys.stdout.isatty() if live is None else live) and sink is None
        self.counts = Counts()
        self._live: Live | None = None
        self._last_plain = time.monotonic()

    def __enter__(self) -> Display:
        if self.live_mode:  # rich is imported only for a terminal: piped builds start faster
            from rich.console import Console
            from rich.live import Live

            self._live = Live(_text(""), console=Console(stderr=True), refresh_per_second=4, transient=True,
                              redirect_stdout=True, redirect_stderr=True)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def out(self, data: bytes | str) -> None:
        self._write(sys.stdout, data)

    def err(self, data: bytes | str) -> None:
        self._write(sys.stderr, data)

    def message(self, text: str) -> None:
        """A line from make itself (``onitu make: ...``) on stderr."""
        self.err(f"{self.program}: {text}\n")

    def _write(self, stream: object, data: bytes | str) -> None:
        if not data:
            return
        if self.sink is not None:
            text = data.decode(errors="surrogateescape") if isinstance(data, bytes) else data
            self.sink("out" if stream is sys.stdout else "err", text)
            return
        if self._live is not None:  # through rich's redirection, which keeps the status line below
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            stream.write(text)  # type: ignore[attr-defined]
            return
        stream.flush()  # type: ignore[attr-defined]
        if isinstance(data, str):
            data = data.encode(errors="surrogateescape")
        stream.buffer.write(data)  # type: ignore[attr-defined]
        stream.buffer.flush()  # type: ignore[attr-defined]

    def update(self, **counts: int) -> None:
        for k, v in counts.items():
            setattr(self.counts, k, v)
        if self.sink is not None:
            return
        if self._live is not None:
            self._live.update(_text(f"{self.program}: {self.counts.line()}"))
        elif time.monotonic() - self._last_plain > PLAIN_EVERY:
            self._last_plain = time.monotonic()
            log.info("%s: %s", self.program, self.counts.line())


def _text(line: str) -> Any:
    from rich.text import Text

    return Text(line, style="dim")
