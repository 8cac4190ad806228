"""What every remote driver shares: availability proved by the marker, retries, names from servers, polling.

- The root is *available* when the server answers, the credentials work, the bucket or directory exists and holds
  the marker ``.onitu-root``. The answer is reused for :data:`AVAILABLE_TTL` seconds, so an ordinary operation does
  not cost an extra request; any failure forgets it, and the error then says whether the root is gone
  (:class:`RootUnavailable`, with the reason) or only the path.
- Transient network errors are retried with backoff (:meth:`RemoteDriver.call`), reconnecting in between.
- Names coming back from a server go through :func:`safe_path`; a hostile one (``..``, absolute, NUL, overlong) is
  skipped and reported once, so nothing can be read or written outside the root because a server said so.
- Directories known to exist are remembered, so a write does not first ask whether its parent is there.
- Change detection is the generic :class:`~onitu.sync.drivers.polling.PollWatcher`, every ``poll`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from onitu.sync.drivers.contract import (
    ANY,
    Availability,
    Callback,
    Changed,
    Driver,
    DriverError,
    Features,
    NotFound,
    Precondition,
    RootUnavailable,
    Stat,
    ancestors,
    is_internal,
    is_under,
    safe_path,
)
from onitu.sync.drivers.polling import PollWatcher

log = logging.getLogger(__name__)

AVAILABLE_TTL = 2.0  # seconds a successful availability check is trusted
RETRIES = 3  # attempts of an operation failing with a transient network error
BACKOFF = 0.25  # seconds before the second attempt, tripled each time
KEPT = 4096  # written fingerprints and directories remembered, at most

T = TypeVar("T")


class RemoteDriver(Driver):
    """A driver whose root is on a server. Subclasses implement the core operations and these hooks."""

    features: ClassVar[Features] = Features(watch="poll", mtime_precision=1.0, mtime_settable=False)
    TRANSIENT: ClassVar[tuple[type[BaseException], ...]] = (ConnectionError, TimeoutError, EOFError)

    def __init__(self, service: str, options: BaseModel, state: Path | None = None) -> None:
        super().__init__(service, options, state)
        self.settle = getattr(options, "settle", 2.0)
        self.poll = getattr(options, "poll", 10.0)
        self._seen_at = -float("inf")  # when the root was last found available (monotonic)
        self._dirs: set[str] = set()  # directories known to exist
        self._written: dict[str, str] = {}
        self._refused: set[str] = set()  # hostile names already reported
        self._watcher: PollWatcher | None = None
        self._making = threading.Lock()  # held while parent_ready makes a directory
        self._retrying = threading.local()  # inside call(): an inner call does not retry again (3 x 3 attempts)

    # -- hooks ----------------------------------------------------------------------------------------------------

    @abstractmethod
    def _probe(self) -> str | None:
        """Why the root cannot be used now (None: it can). May raise; :meth:`describe` then gives the reason."""

    @abstractmethod
    def _mark(self) -> None:
        """Create the root, if the backend has such a thing, and the marker in it."""

    def _reset(self) -> None:
        """Drop connections after a transient failure (the next call reconnects)."""

    def describe(self, exc: BaseException) -> str:
        """A reason people can act on, for an exception from the client library."""
        if isinstance(exc, PermissionError):
            return f"permission denied (wrong credentials?): {exc}"
        if isinstance(exc, ConnectionError | TimeoutError | OSError) and not isinstance(exc, FileNotFoundError):
            return f"cannot reach the server: {exc}"
        return f"{type(exc).__name__}: {exc}"

    # -- retries and errors ---------------------------------------------------------------------------------------

    def call(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``operation(*args, **kwargs)``, tried again with backoff after a transient network error.

        Only the outermost call retries: an availability probe made of several calls would otherwise try each of
        them 3 x 3 times, and a server gone would be noticed only seconds later."""
        if getattr(self._retrying, "on", False):
            return operation(*args, **kwargs)
        self._retrying.on = True
        try:
            return self._retried(operation, *args, **kwargs)
        finally:
            self._retrying.on = False

    def _retried(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        delay = BACKOFF
        for attempt in range(1, RETRIES + 1):
            try:
                return operation(*args, **kwargs)
            except self.TRANSIENT as exc:
                if attempt == RETRIES:
                    raise
                log.info("%s: %s (attempt %d of %d); retrying in %.2f s", self.service, self.describe(exc), attempt,
                         RETRIES, delay)
                with contextlib.suppress(Exception):
                    self._reset()
                time.sleep(delay)
                delay *= 3
        raise AssertionError("unreachable")

    def failure(self, exc: BaseException, path: str) -> DriverError:
        """The driver error for ``exc`` raised by an operation on ``path``: is the root gone, or just the path?"""
        if isinstance(exc, DriverError):
            return exc
        self._seen_at = -float("inf")
        status = self.available()
        if not status:
            return self.error(RootUnavailable, path, status.reason)
        if isinstance(exc, FileNotFoundError):
            return self.error(NotFound, path, "no such file or directory")
        return self.error(DriverError, path, self.describe(exc))

    @contextlib.contextmanager
    def failing(self, path: str) -> Iterator[None]:
        """Turn whatever the block raises (but a driver error) into the right :class:`DriverError`."""
        try:
            yield
        except DriverError:
            raise
        except Exception as exc:
            raise self.failure(exc, path) from None

    # -- availability ---------------------------------------------------------------------------------------------

    def available(self) -> Availability:
        """The server answers, the credentials work and the root holds its marker."""
        try:
            reason = self.call(self._probe)
        except Exception as exc:
            reason = self.describe(exc)
        if reason:
            self._seen_at = -float("inf")
            if self._watcher is not None:  # an order may find the outage first: shown now, not at the next poll
                self._watcher.lost(f"{self.root}: {reason}")
            return Availability(False, f"{self.root}: {reason}")
        self._seen_at = time.monotonic()
        return Availability(True)

    def ensure(self) -> None:
        """Raise :class:`RootUnavailable` unless the root was found available within :data:`AVAILABLE_TTL`."""
        if time.monotonic() - self._seen_at > AVAILABLE_TTL and not (status := self.available()):
            raise self.error(RootUnavailable, "", status.reason)

    def initialise(self) -> None:
        """Create the root and its marker."""
        try:
            self.call(self._mark)
        except DriverError:
            raise
        except Exception as exc:
            raise self.error(DriverError, "", f"cannot initialise the root: {self.describe(exc)}") from exc
        self._seen_at = -float("inf")

    # -- names ----------------------------------------------------------------------------------------------------

    def accept(self, name: str) -> str | None:
        """A relative name found on the server, validated (None, reported once, for a hostile one; None for our
        own internal names)."""
        if is_internal(name.rpartition("/")[2]):
            return None
        try:
            return safe_path(name)
        except ValueError as exc:
            if name not in self._refused and len(self._refused) < KEPT:
                self._refused.add(name)
                log.warning("%s: refusing a name from the server %r: %s", self.service, name[:200], exc)
            return None

    def known_dir(self, path: str) -> None:
        """Note that directory ``path`` (and so its parents) exists."""
        if len(self._dirs) >= KEPT:
            self._dirs.clear()
        self._dirs.add(path)
        self._dirs.update(ancestors(path))

    def forget_dirs(self, path: str) -> None:
        """Forget ``path`` and what is below it (deleted or moved)."""
        self._dirs = {d for d in self._dirs if not is_under(d, path)}

    def parent_ready(self, path: str) -> None:
        """Make sure the parent directory of ``path`` exists (free when it is known to). One thread makes it while
        the others writing there wait: not one MKD/MKCOL each, which servers answer with errors (wsgidav: 500)."""
        parent = path.rpartition("/")[0]
        if parent and parent not in self._dirs:
            with self._making:
                if parent not in self._dirs:
                    self.mkdir(parent)

    def check_precondition(self, path: str, replaces: Precondition) -> Stat | None:
        """The entry at ``path`` now (one stat, none when ``replaces`` is ANY), checked by :meth:`precondition`."""
        if replaces is ANY:
            return None
        current = self.stat(path)
        self.precondition(current, path, replaces)
        return current

    def precondition(self, current: Stat | None, path: str, replaces: Precondition) -> None:
        """Raise :class:`Changed` unless ``current`` (the entry at ``path``) has the fingerprint ``replaces``."""
        if replaces is ANY:
            return
        found = current.fingerprint if current is not None else None
        if found != replaces:
            raise self.error(Changed, path, f"changed meanwhile (expected {replaces or 'nothing'}, found "
                                            f"{found or 'nothing'})")

    # -- the operations every remote backend does alike, around its own hooks -----------------------------------

    @abstractmethod
    def raw_stat(self, path: str) -> Stat | None:
        """The entry at ``path`` (None if there is none, or it is neither a file nor a directory), no checks."""

    def stat(self, path: str) -> Stat | None:
        """The entry at ``path``, None if there is none."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            return self.raw_stat(path)

    @abstractmethod
    def raw_read(self, path: str, offset: int, length: int) -> bytes:
        """Bytes of ``path`` (``length`` -1: to the end), no checks; FileNotFoundError where there is no file (a
        directory included), IsADirectoryError where the backend can tell."""

    @abstractmethod
    def remove_entry(self, current: Stat) -> None:
        """Remove the file or empty directory ``current`` (checked to exist and be as expected)."""

    @abstractmethod
    def move_entry(self, current: Stat, dst: str) -> Stat:
        """Move ``current`` to ``dst`` (checked not to exist, nor to be below a directory moved) and stat it."""

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes ``offset`` to ``offset + length`` (or the end): one ranged request."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        path = self.check(path)
        self.ensure()
        if length == 0:
            return b""
        with self.failing(path):
            try:
                return self.call(self.raw_read, path, offset, -1 if length is None else length)
            except IsADirectoryError:
                pass
            except FileNotFoundError:
                current = self.stat(path)
                if current is None or not current.is_dir:
                    raise
            raise self.error(DriverError, path, "is a directory")

    def existing(self, path: str) -> Stat:
        """The entry at ``path``; :class:`NotFound` if there is none."""
        current = self.stat(path)
        if current is None:
            raise self.error(NotFound, path, "no such file or directory")
        return current

    def delete(self, path: str, *, replaces: Precondition = ANY) -> None:
        """Remove a file or an empty directory."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            current = self.existing(path)
            self.precondition(current, path, replaces)
            self.remove_entry(current)
        if current.is_dir:
            self.forget_dirs(path)

    def move(self, src: str, dst: str, *, replaces: Precondition = ANY) -> Stat:
        """Move ``src`` to ``dst``, which must not exist (parents made as needed)."""
        src, dst = self.check(src), self.check(dst)
        self.ensure()
        with self.failing(src):
            current = self.existing(src)
            self.precondition(current, src, replaces)
            if current.is_dir and is_under(dst, src):
                raise self.error(DriverError, src, f"cannot move a directory into itself ({dst})")
            if self.stat(dst) is not None:
                raise self.error(DriverError, dst, "destination exists")
            moved = self.move_entry(current, dst)
        self.forget_dirs(src)
        return moved

    # -- writes seen by the watcher -------------------------------------------------------------------------------

    def wrote_stat(self, stat: Stat) -> Stat:
        """Remember ``stat`` as this driver's own write (its poll need not report it)."""
        if len(self._written) >= KEPT:
            self._written.clear()
        self._written[stat.path] = stat.fingerprint
        return stat

    def wrote(self, path: str, fingerprint: str) -> bool:
        """Whether ``path`` is as this driver wrote it (answers once)."""
        return self._written.pop(path, None) == fingerprint

    # -- watching -------------------------------------------------------------------------------------------------

    def watch(self, callback: Callback, *, scan_interval: float = 600.0) -> None:
        """Poll the root every ``poll`` seconds (see :mod:`onitu.sync.drivers.polling`)."""
        if self._watcher is not None:
            raise RuntimeError("already watching")
        self._watcher = PollWatcher(self, callback, self.poll, scan_interval)
        self._watcher.start()

    def close(self) -> None:
        """Stop polling and drop the connections."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        with contextlib.suppress(Exception):
            self._reset()

