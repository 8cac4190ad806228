"""The interface every storage backend implements, and the path rules and errors they all share.

Shaped like rclone's ``fs.Fs``: a small mandatory core (availability, stat, list, ranged read, verified write,
delete, mkdir) plus declared :class:`Features` telling what the backend can do beyond it (atomic rename, resumable
writes and their granularity, real directories, directory moves, a native content hash, mtime precision, push or
poll change detection). Callers and the conformance suite read the features instead of assuming a POSIX disk.

A driver serves one *service*: one root (a local directory, a bucket prefix, a remote directory) under which every
path is relative, POSIX-style (``a/b.txt``) and NFC-normalised. Paths coming from the hub go through
:func:`safe_path` before a driver touches anything, so hostile names are refused in one place for every backend.

Writes are verified by sha256 before anything becomes visible. Backends that can rename stage under a name the
scanners ignore (``.onitu-tmp-…`` in the destination directory) and rename into place (:mod:`.staging`); object
stores complete a multipart upload only once its hash is checked. Where ``Features.resumable`` says so, staged data
survives an interruption so the transfer can resume (:meth:`Driver.partial`, ``write(…, resume_from=N)``).

A root must be *proved* present before its listing means anything: :meth:`Driver.available` checks the root and its
marker ``.onitu-root`` (written once by :meth:`Driver.initialise` when the service is first added), so an unmounted or
vanished root is reported as unavailable instead of as a replica whose files were all deleted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final, Literal

from pydantic import BaseModel

from onitu.sync.drivers.skipped import Skipped

MARKER: Final = ".onitu-root"
TEMP_PREFIX: Final = ".onitu-tmp-"
RESERVED_PREFIX: Final = ".onitu-"  # every internal name starts with this; scanners skip it, users may not use it
CHUNK: Final = 1 << 20
MAX_COMPONENT: Final = 255  # bytes, as UTF-8: the limit of every common filesystem
MAX_PATH: Final = 4096


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()
"""For the ``replaces`` preconditions: proceed whatever is currently at the path."""

Precondition = str | None | _Any  # a fingerprint the path must still have, None (must not exist), or ANY


class DriverError(Exception):
    """A driver operation failed. ``str()`` names the service, its root and the path."""

    def __init__(self, service: str, root: str, path: str, problem: str) -> None:
        self.service, self.root, self.path, self.problem = service, root, path, problem
        where = f"{service} ({root})"
        super().__init__(f"{where}: {path}: {problem}" if path else f"{where}: {problem}")


class NotFound(DriverError):
    """The path does not exist (the root itself is fine)."""


class RootUnavailable(DriverError):
    """The root is missing, unmounted, unreadable or lost its marker: nothing may be inferred from it."""


class HashMismatch(DriverError):
    """What was written does not have the expected sha256; nothing was made visible."""


class UnsafePath(DriverError, ValueError):
    """A path that could escape the root or that this backend cannot represent faithfully."""


class CaseCollision(UnsafePath):
    """On a replica that ignores case, another entry's name differs from this path's only in case: writing would
    replace that other file."""


class Changed(DriverError):
    """The path no longer has the fingerprint the caller based its decision on (someone changed it meanwhile)."""


_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
# A path of printable ASCII that safe_path accepts as it is (components of 1 to 255 characters, none "." or "..", none
# starting with the reserved prefix): told in one match, as most paths are, instead of a look at each component.
_COMPONENT = rf"(?!\.\.?(?:/|\Z))(?!{re.escape(RESERVED_PREFIX)})[\x20-\x2e\x30-\x5b\x5d-\x7e]{{1,{MAX_COMPONENT}}}"
_PLAIN = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


def safe_path(name: str, *, root_ok: bool = False) -> str:
    """Validate a path relative to a root and return it NFC-normalised; raise ValueError saying what is wrong.

    Refused: non-text, NUL and other control characters, backslashes (a separator on some backends, so ambiguous),
    text that is not valid Unicode, absolute paths, empty, ``.`` and ``..`` components, components over 255 bytes,
    paths over 4096 bytes, and components starting with ``.onitu-`` (reserved for Onitu's own files). The empty
    path (the root itself) is accepted only with ``root_ok``.
    """
    if type(name) is str and len(name) <= MAX_PATH and _PLAIN.fullmatch(name):
        return name
    if not isinstance(name, str):
        raise ValueError(f"a path must be text, not {type(name).__name__}")
    if name == "":
        if root_ok:
            return ""
        raise ValueError("empty path")
    bad = _FORBIDDEN.search(name)
    if bad is not None:
        raise ValueError(f"forbidden character {bad.group()!r} in path {name!r}")
    ascii_only = name.isascii()  # the common case, and the cheap one: no encoding or normalisation to do
    try:
        size = len(name) if ascii_only else len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"path {name!r} is not valid Unicode") from None
    if name.startswith("/"):
        raise ValueError(f"absolute path {name!r}")
    if size > MAX_PATH:
        raise ValueError(f"path longer than {MAX_PATH} bytes")
    if not ascii_only:
        name = unicodedata.normalize("NFC", name)
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"path {name!r} has an empty, '.' or '..' component")
        if (len(part) if ascii_only else len(part.encode("utf-8"))) > MAX_COMPONENT:
            raise ValueError(f"component longer than {MAX_COMPONENT} bytes in path {name[:60]!r}...")
        if part.startswith(RESERVED_PREFIX):
            raise ValueError(f"component {part!r} uses the reserved prefix {RESERVED_PREFIX!r}")
    return name


def is_internal(name: str) -> bool:
    """True for the names Onitu keeps for itself (marker, staged writes): never listed, never reported."""
    return name.startswith(RESERVED_PREFIX)


def temp_name(basename: str) -> str:
    """The staging name of a write to ``basename`` in the same directory: fixed, so a resumed transfer finds it."""
    return TEMP_PREFIX + hashlib.sha256(basename.encode("utf-8")).hexdigest()[:32]


def parent_of(path: str) -> str:
    """The parent of a relative path ('' for a top-level name)."""
    return path.rpartition("/")[0]


def ancestors(path: str) -> Iterator[str]:
    """The directories above a relative path, nearest first (``a/b/c`` -> ``a/b``, ``a``)."""
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path


def is_under(path: str, folder: str) -> bool:
    """True if ``path`` is ``folder`` or below it ('' is the root, which holds everything)."""
    return not folder or path == folder or path.startswith(folder + "/")


@dataclass(frozen=True, slots=True)
class Features:
    """What a backend can do beyond the mandatory core (rclone's ``fs.Features``), declared per driver class."""

    atomic_rename: bool = True  # a file is renamed in one step (else: copy + delete)
    resumable: int = 1  # granularity in bytes at which an interrupted write resumes; 0: it restarts from scratch
    real_dirs: bool = True  # directories are entries of their own (else: implied by the files below them)
    dir_move: bool = True  # a directory moves in one operation (else: file by file)
    native_hash: bool = False  # the sha256 of a file is known without reading it (object metadata)
    mtime_precision: float = 1e-9  # seconds
    mtime_settable: bool = True
    watch: Literal["push", "poll"] = "push"  # changes are pushed as they happen, or found by listing periodically


@dataclass(frozen=True, slots=True)
class Stat:
    """One entry of a replica. ``fingerprint`` is cheap and changes whenever the content may have changed."""

    path: str
    is_dir: bool
    size: int
    mtime_ns: int
    fingerprint: str
    sha256: str | None = None  # when the backend knows it for free


@dataclass(frozen=True, slots=True)
class WholeFile:
    """One file of :meth:`Driver.write_many`: all its bytes, their expected sha256, and the write's precondition."""

    path: str
    data: bytes
    sha256: str
    replaces: Precondition = ANY


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a root can be trusted; false with the reason otherwise (``bool(a)`` tells which)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


EventKind = Literal["created", "modified", "deleted", "moved", "rescan", "unavailable"]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A change seen by a watcher.

    ``created``/``modified``: ``path`` is settled (stable for the driver's settle time). ``deleted`` and ``moved``
    (``path`` to ``dest``) on a directory cover everything below it, and so does ``created`` on one: what it held
    when it appeared (moved in whole) may or may not be reported entry by entry; its consumer lists it. ``rescan``:
    events may have been missed (start, overflow, periodic check, root back after an outage): list the replica and
    compare with what you know, skipping entries for which :meth:`Driver.settled` is false (the watcher reports
    those once they settle).
    ``unavailable``: the root went away; ``path`` is empty and ``dest`` holds the reason.
    """

    kind: EventKind
    path: str = ""
    dest: str | None = None
    is_dir: bool = False
    stat: Stat | None = None  # the entry as a polling watcher just listed it: the consumer need not stat it again


Callback = Callable[[ChangeEvent], None]


def deliver(callback: Callback, event: ChangeEvent, service: str) -> None:
    """Hand ``event`` to a watcher's consumer; a consumer's bug is logged, and the watcher lives on."""
    try:
        callback(event)
    except Exception:
        logging.getLogger(__name__).exception("%s: change callback failed on %s", service, event)


class Driver(ABC):
    """One service's storage. Subclasses set ``name`` (the registry key) and ``Options`` (their option schema).

    Every method taking a path validates it with :func:`safe_path` and raises :class:`UnsafePath` if it is refused.
    Operations on an unavailable root raise :class:`RootUnavailable`, never :class:`NotFound` or an empty listing.
    ``replaces`` is a precondition: a fingerprint (from :class:`Stat`) the path must still have, None when it must
    not exist, or :data:`ANY`; otherwise :class:`Changed` is raised and nothing is modified.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    features: ClassVar[Features] = Features()

    def __init__(self, service: str, options: BaseModel, state: Path | None = None) -> None:
        """``state``: a directory where the driver may keep small files of its own (None: it keeps them in memory)."""
        self.service, self.options, self.state = service, options, state
        self.settle = 0.0  # seconds a file must stay unchanged before it is reported (0: writes are atomic)
        # A service never started has no marker yet: only a read-only preview (`onitu plan`) may then list it.
        self.unmarked_ok = False
        self.skipped = Skipped(service)  # what it leaves out or refuses, and why (``onitu status --skipped``)

    @property
    @abstractmethod
    def root(self) -> str:
        """The root as people know it (a directory, a URL), for messages."""

    def error(self, kind: type[DriverError], path: str, problem: str) -> DriverError:
        """An exception of ``kind`` about ``path`` on this service."""
        return kind(self.service, self.root, path, problem)

    def check(self, path: str, *, root_ok: bool = False) -> str:
        """``safe_path`` raising :class:`UnsafePath` named after this service."""
        try:
            return safe_path(path, root_ok=root_ok)
        except ValueError as exc:
            raise self.error(UnsafePath, repr(path)[:80], str(exc)) from None

    def settled(self, stat: Stat, now_ns: int) -> bool:
        """False for a file modified less than ``settle`` seconds ago: it may still be being written."""
        age = now_ns - stat.mtime_ns
        settle_ns = int(self.settle * 1e9)
        return stat.is_dir or age >= settle_ns or age < -settle_ns  # far in the future: waiting would not help

    @abstractmethod
    def available(self) -> Availability:
        """Whether the root is present, reachable, readable and carries its marker."""

    @abstractmethod
    def initialise(self) -> None:
        """Prepare the root for first use (create it and its marker). Call once, when the service is first added.

        Never call it on an ordinary start: a root that lost its marker is exactly what :meth:`available` catches.
        """

    @abstractmethod
    def stat(self, path: str) -> Stat | None:
        """The entry at ``path``, or None if there is none."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[Stat]:
        """Every file and directory below ``prefix`` (recursively, not the prefix itself); internal names skipped."""

    @abstractmethod
    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Up to ``length`` bytes from ``offset`` (all the rest if None); short only at the end of the file."""

    def chunks(self, path: str, offset: int = 0, size: int = CHUNK) -> Iterator[bytes]:
        """The file from ``offset`` to its end, ``size`` bytes at a time."""
        while True:
            data = self.read(path, offset, size)
            if data:
                yield data
            if len(data) < size:
                return
            offset += len(data)

    def checksum(self, path: str) -> str:
        """The sha256 of a file's content, as lowercase hex."""
        digest = hashlib.sha256()
        for data in self.chunks(path):
            digest.update(data)
        return digest.hexdigest()

    @abstractmethod
    def write(
        self, path: str, chunks: Iterable[bytes], *, expected_sha256: str, resume_from: int = 0,
        replaces: Precondition = ANY,
    ) -> Stat:
        """Write a file from ``chunks`` (its bytes from ``resume_from`` on) and return its new :class:`Stat`.

        The data is staged, its sha256 (of the whole file, staged prefix included) checked against
        ``expected_sha256``, made durable, then moved into place; missing parent directories are created. On a
        mismatch the staged data is removed and :class:`HashMismatch` raised: nothing becomes visible. If ``chunks``
        raises, the staged data is kept for a later ``resume_from=partial(path)``.
        """

    def write_many(self, files: list[WholeFile]) -> list[Stat | DriverError]:
        """Write whole files, each as :meth:`write` does (verified and durable before it is visible); for each, its
        new :class:`Stat` or the error that refused it. Drivers that can make many files durable at once override
        this one-by-one version."""
        done: list[Stat | DriverError] = []
        for one in files:
            try:
                done.append(self.write(one.path, [one.data], expected_sha256=one.sha256, replaces=one.replaces))
            except DriverError as exc:
                done.append(exc)
        return done

    def partial(self, path: str) -> int:
        """How many bytes of an interrupted write to ``path`` are staged (0 if none): a multiple of
        ``features.resumable``, and always 0 where writes cannot resume."""
        self.check(path)
        return 0

    def discard(self, path: str) -> None:
        """Forget the staged data of an interrupted write to ``path``, if any."""
        self.check(path)

    @abstractmethod
    def delete(self, path: str, *, replaces: Precondition = ANY) -> None:
        """Remove a file, or an empty directory. Raises :class:`NotFound` if there is nothing there."""

    @abstractmethod
    def move(self, src: str, dst: str, *, replaces: Precondition = ANY) -> Stat:
        """Rename a file or a directory (with everything below it); ``dst`` must not exist; ``replaces``: src's."""

    @abstractmethod
    def mkdir(self, path: str) -> Stat:
        """Create a directory and its missing parents; an existing directory is fine."""

    @abstractmethod
    def watch(self, callback: Callback, *, scan_interval: float = 600.0) -> None:
        """Start delivering :class:`ChangeEvent` to ``callback`` (from another thread) until :meth:`close`.

        The first event is ``rescan``; another follows after an event overflow, every ``scan_interval`` seconds,
        and when the root comes back after being unavailable. Changes made through this driver itself may go
        unreported (their caller knows them); every other change is reported. A polling watcher (``features.watch
        == "poll"``) may report a move as a deletion and a creation.
        """

    def wrote(self, path: str, fingerprint: str) -> bool:
        """Whether the entry at ``path``, now ``fingerprint``, is exactly as this driver just wrote it (its watcher
        need not report it). False unless the driver keeps track."""
        return False

    @abstractmethod
    def close(self) -> None:
        """Stop watching and release resources; the driver may not be used afterwards."""
