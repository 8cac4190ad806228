"""Template regexes the server runs in bounded time, so that no pattern can freeze the space.

A regex that :func:`~onitu.space.re2syntax.to_re2` can rewrite runs in RE2, in time linear in its input. The
others (backreferences, lookaround, ...) run in Python's ``re`` in a worker process (``regexworker.py``), never
on the event loop's own thread: the server waits for the answer at most what is left of a budget per loop turn
(:data:`TURN_BUDGET`), kills a worker that is late and switches to a spare one. A template whose regex hit the
bound answers :class:`~onitu.space.errors.RegexTooSlow`: the request that carried it fails with that error, and a
blocked take/read or a notify holding it is ended with it. Answers are remembered per (pattern, short string).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import struct
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import re2

from onitu.space.errors import RegexTooSlow
from onitu.space.re2syntax import to_re2
from onitu.space.template import Pattern, Symbol, Template, check_tuple

log = logging.getLogger("onitu.space.bounded")

TURN_BUDGET = 0.02  # seconds of Python-only regex matching per loop turn, all requests together
STARTUP_GRACE = 2.0  # the first worker's start (once per server) is not held against a request's budget
RESTARTS = (2, 1.0)  # at most this many workers killed per this many seconds; then Python-only regexes wait
MEMO_SIZE = 50_000
MEMO_MAX_CHARS = 1024
WORKER = Path(__file__).with_name("regexworker.py")

_options = re2.Options()
_options.log_errors = False  # a pattern RE2 refuses is not an error here: Python's re takes it


@lru_cache(maxsize=4096)
def _re2_search(source: str, flags: int) -> Callable[[str], Any] | None:
    translated = to_re2(source, flags)
    if translated is None:
        return None
    try:
        return re2.compile(translated, _options).search
    except re2.error:  # over RE2's size limits, say
        return None


class Worker:
    """One ``regexworker.py`` process and its pipes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.ready = False

    def wait_ready(self, deadline: float) -> bool:
        """Has the process started (it says so first)? Waits until ``deadline`` at most."""
        if not self.ready and self._read(4, deadline) is not None:
            self.ready = True
        return self.ready

    def ask(self, source: str, flags: int, strings: list[str], deadline: float) -> list[int] | None:
        """The indexes of the strings that match, or None if the answer did not come by ``deadline``."""
        if not self.wait_ready(deadline):
            return None
        body = json.dumps([source, flags, strings]).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(body)) + body)
            self.proc.stdin.flush()
        except OSError:
            return None
        head = self._read(4, deadline)
        if head is None:
            return None
        answer = self._read(struct.unpack(">I", head)[0], deadline)
        return None if answer is None else json.loads(answer)

    def _read(self, n: int, deadline: float) -> bytes | None:
        fd, out = self.proc.stdout.fileno(), b""
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, n - len(out))
            if not chunk:
                return None
            out += chunk
        return out

    def kill(self) -> None:
        """SIGKILL, without waiting for it to die: :meth:`reaped` says when it is gone."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()

    def reaped(self) -> bool:
        return self.proc.poll() is not None


class PythonRegexes:
    """Python's ``re`` off the event loop's thread, within a budget of time per loop turn."""

    def __init__(self, budget: float = TURN_BUDGET) -> None:
        self.budget = self.left = budget
        self.poisoned = False  # a template hit the bound this turn: the server ends whatever holds one
        self._worker: Worker | None = None
        self._spare: Worker | None = None
        self._started = False
        self._memo: OrderedDict[tuple[str, int, str], bool] = OrderedDict()
        self._slow: OrderedDict[tuple[str, int, str], None] = OrderedDict()  # ran away once: refused at once
        self._kills: list[float] = []
        self._dying: list[Worker] = []
        self.timeouts = 0

    def start(self) -> None:
        """Start the worker and its spare now, so that the first request does not wait for them."""
        self._take_worker()

    def new_turn(self) -> None:
        self.left, self.poisoned = self.budget, False

    def search(self, pattern: Pattern, text: str) -> bool:
        return self.search_many(pattern, [text])[0]

    def search_many(self, pattern: Pattern, strings: Sequence[str]) -> list[bool]:
        source, flags = pattern.pattern, pattern.flags
        memo = self._memo
        unknown = list(dict.fromkeys(s for s in strings if (source, flags, s) not in memo))
        if unknown:
            found = set(self._ask(pattern, unknown))
            for s in unknown:
                if len(s) <= MEMO_MAX_CHARS:
                    memo[(source, flags, s)] = s in found
            while len(memo) > MEMO_SIZE:
                memo.popitem(last=False)
            short = {s: s in found for s in unknown}
        else:
            short = {}
        return [short[s] if s in short else memo[(source, flags, s)] for s in strings]

    def _ask(self, pattern: Pattern, strings: list[str]) -> list[str]:
        source, flags = pattern.pattern, pattern.flags
        if any((source, flags, s) in self._slow for s in strings):
            raise self._too_slow(pattern, strings, "ran away on one of these strings before")
        now = time.monotonic()
        self._kills = [t for t in self._kills if now - t < RESTARTS[1]]
        if self.left <= 0 or len(self._kills) >= RESTARTS[0]:
            raise RegexTooSlow(f"template regex {source!r}: the time this server gives regexes RE2 cannot run is "
                               "used up for now; send it again later, or write the pattern without backreferences "
                               "and lookaround so that RE2 can run it")
        worker = self._take_worker()
        if not self._started:  # the first worker's start is the server's cost, not this request's
            self._started = worker.wait_ready(time.monotonic() + STARTUP_GRACE)
        start = time.monotonic()
        answer = worker.ask(pattern.pattern, pattern.flags, strings, start + self.left)
        self.left -= time.monotonic() - start
        if answer is None:
            self.timeouts += 1
            self._kills.append(time.monotonic())
            worker.kill()
            self._dying = [w for w in [*self._dying, worker] if not w.reaped()]
            self._worker = None
            self._take_worker()  # the spare takes over now, so the next turn finds one ready
            if len(strings) == 1:
                self._slow[(source, flags, strings[0])] = None
                while len(self._slow) > MEMO_SIZE // 50:
                    self._slow.popitem(last=False)
            raise self._too_slow(pattern, strings, f"did not finish within {self.budget * 1000:.0f} ms")
        return [strings[i] for i in answer]

    @staticmethod
    def _too_slow(pattern: Pattern, strings: list[str], what: str) -> RegexTooSlow:
        return RegexTooSlow(f"template regex {pattern.pattern!r} {what} against {len(strings)} string(s) (Python's "
                            "re, as RE2 cannot run backreferences or lookaround); rewrite it without them")

    def _take_worker(self) -> Worker:
        if self._worker is None:
            self._worker, self._spare = self._spare or Worker(), None
        if self._spare is None:
            self._spare = Worker()
        return self._worker

    def close(self) -> None:
        for worker in (self._worker, self._spare, *self._dying):
            if worker is not None:
                worker.kill()
                worker.proc.wait()
        self._worker = self._spare = None
        self._dying = []


class BoundedTemplate(Template):
    """A template with a regex only Python's ``re`` can run: a match that hits the bound sets :attr:`error`, and
    the template matches nothing from then on."""

    __slots__ = ("error", "fallbacks", "python")

    def __init__(self, pattern: Sequence | Mapping, regex: Callable[[Pattern], Callable[[str], bool]],
                 python: PythonRegexes, fallbacks: list[tuple[Any, Pattern]]) -> None:
        super().__init__(pattern, regex)
        self.python, self.fallbacks = python, fallbacks
        self.error: RegexTooSlow | None = None

    def match(self, tup: tuple | dict) -> bool:
        if self.error is not None:
            return False
        try:
            return Template.match(self, tup)
        except RegexTooSlow as exc:
            self.fail(exc)
            return False

    def fail(self, exc: RegexTooSlow) -> None:
        self.error = exc
        self.python.poisoned = True

    def prefetch(self, tuples: Iterable[tuple | dict]) -> None:
        """Match every string these tuples hold where a Python-only regex applies, in one round trip."""
        for key, regex in self.fallbacks:
            strings = []
            for tup in tuples:
                if len(tup) == self.size and (key in tup if self.is_dict else True):
                    x = tup[key]
                    if type(x) is Symbol:
                        x = x.name
                    if type(x) is str:
                        strings.append(x)
            if strings and self.error is None:
                try:
                    self.python.search_many(regex, strings)
                except RegexTooSlow as exc:
                    self.fail(exc)


class Regexes:
    """The server's template compiler: RE2 where it can, bounded Python ``re`` where it cannot."""

    def __init__(self, budget: float = TURN_BUDGET) -> None:
        self.python = PythonRegexes(budget)

    def template(self, pattern: Any) -> Template:
        pattern = check_tuple(pattern, "template")
        items = pattern.items() if type(pattern) is dict else enumerate(pattern)
        regexes = [(key, t) for key, t in items if type(t) is Pattern]
        if not regexes:
            return Template(pattern)
        fallbacks = [(key, t) for key, t in regexes if _re2_search(t.pattern, t.flags) is None]
        if not fallbacks:
            return Template(pattern, self._compile)
        return BoundedTemplate(pattern, self._compile, self.python, fallbacks)

    def _compile(self, regex: Pattern) -> Callable[[str], bool]:
        search = _re2_search(regex.pattern, regex.flags)
        if search is not None:
            return lambda s: search(s) is not None
        python = self.python
        return lambda s: python.search(regex, s)

    def close(self) -> None:
        self.python.close()
