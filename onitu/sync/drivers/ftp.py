"""The FTP driver: a directory on an FTP server (explicit FTPS with ``tls``), through the standard ``ftplib``.

Options (:class:`~onitu.sync.drivers.options.FTPOptions`): ``host``, ``port`` (21), ``username``, ``password``,
``tls`` (false), ``root`` (default: the login directory), ``poll`` and ``settle``.

Listings use MLSD (one per directory) and a file's fingerprint is its MLSD ``size``, ``modify`` and ``unique``.
Reads are ranged (``REST`` then ``RETR``, closed once the range is read). Writes are staged and renamed into place
(``RNFR``/``RNTO``), resumable at any byte (``REST`` then ``STOR``). A control connection serves one command at a
time, so the driver keeps a small pool of logged-in connections for its threads.
"""

from __future__ import annotations

import contextlib
import ftplib
import ssl
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from onitu.sync.drivers.contract import MARKER, DriverError, Features, Stat
from onitu.sync.drivers.options import FTPOptions, reveal
from onitu.sync.drivers.staging import RenameStaged

TIMEOUT = 20.0  # seconds without an answer before a request is given up (a frozen server)
POOL = 8  # idle connections kept
FACTS = ["type", "size", "modify", "unique"]


def _mtime_ns(modify: str | None) -> int:
    if not modify:
        return 0
    whole, _, fraction = modify.partition(".")
    when = datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


def _stat(path: str, facts: dict[str, str]) -> Stat | None:
    kind = facts.get("type", "").lower()
    if kind == "dir":
        return Stat(path, True, 0, 0, "d")
    if kind != "file":
        return None  # cdir, pdir, links, devices
    size = int(facts.get("size", 0))
    modify = facts.get("modify", "")
    return Stat(path, False, size, _mtime_ns(modify), f"{size}-{modify}-{facts.get('unique', '')}")


def _missing(exc: ftplib.Error) -> bool:
    return str(exc).startswith("550")


class FTPDriver(RenameStaged):
    """A directory tree on an FTP server."""

    name = "ftp"
    Options = FTPOptions
    features: ClassVar[Features] = Features(watch="poll", mtime_precision=1.0, mtime_settable=False)
    TRANSIENT = (*RenameStaged.TRANSIENT, ftplib.error_temp, ftplib.error_reply)

    def __init__(self, service: str, options: BaseModel, state: Path | None = None) -> None:
        assert isinstance(options, FTPOptions)
        super().__init__(service, options, state)
        self.options: FTPOptions = options
        self._idle: list[ftplib.FTP] = []
        self._lock = threading.Lock()
        self._base: str | None = None  # the root as an absolute path, known after the first login

    @property
    def root(self) -> str:
        """``ftp://host:port/root``."""
        o = self.options
        return f"{'ftps' if o.tls else 'ftp'}://{o.host}:{o.port}/{o.root}"

    # -- connections ----------------------------------------------------------------------------------------------

    def _connect(self) -> ftplib.FTP:
        o = self.options
        username, password = reveal(o.username, "username") or "anonymous", reveal(o.password, "password") or ""
        conn = ftplib.FTP_TLS(context=ssl.create_default_context()) if o.tls else ftplib.FTP()
        conn.encoding = "utf-8"
        conn.connect(o.host, o.port, timeout=TIMEOUT)
        try:
            conn.login(username, password)
        except ftplib.error_perm as exc:
            conn.close()
            raise PermissionError(f"login refused (wrong username or password?): {exc}") from None
        if isinstance(conn, ftplib.FTP_TLS):
            conn.prot_p()
        conn.voidcmd("TYPE I")
        if self._base is None:
            home = conn.pwd().rstrip("/")
            self._base = o.root if o.root.startswith("/") else f"{home}/{o.root}" if o.root else home or "/"
            self._base = self._base.rstrip("/") or "/"
        return conn

    @contextlib.contextmanager
    def session(self) -> Iterator[ftplib.FTP]:
        """A logged-in connection of the pool; dropped if the block fails with anything but a plain refusal."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        except ftplib.error_perm:
            self._release(conn)
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._release(conn)

    def _release(self, conn: ftplib.FTP) -> None:
        with self._lock:
            if len(self._idle) < POOL:
                self._idle.append(conn)
                return
        conn.close()

    def _reset(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()

    def full(self, path: str) -> str:
        """The server's absolute name of a relative path (log in first: the login directory may be the root)."""
        if self._base is None:
            with self.session():
                pass
        assert self._base is not None
        return f"{self._base.rstrip('/')}/{path}" if path else self._base

    def ftp(self, operation: str, *args: object) -> object:
        """``FTP.operation(*args)`` on a pooled connection, retried after a transient failure."""
        return self.call(self._command, operation, *args)

    def _command(self, operation: str, *args: object) -> object:
        with self.session() as conn:
            return getattr(conn, operation)(*args)

    # -- availability ---------------------------------------------------------------------------------------------

    def _facts(self, path: str) -> dict[str, str] | None:
        """MLST of a relative path (internal names allowed), None if there is nothing there."""
        try:
            answer = str(self.ftp("sendcmd", f"MLST {self.full(path)}"))
        except ftplib.error_perm as exc:
            if _missing(exc):
                return None
            raise
        line = next((ln for ln in answer.splitlines()[1:] if ln.startswith(" ")), "")
        facts, _, _ = line.strip().partition(" ")
        return {k.lower(): v for k, _, v in (f.partition("=") for f in facts.split(";") if f)}

    def _probe(self) -> str | None:
        base = self._facts("")
        if base is None or base.get("type", "").lower() not in ("dir", "cdir"):
            return f"directory {self._base} does not exist on the server"
        if not self.unmarked_ok and self._facts(MARKER) is None:
            return f"no {MARKER} marker (replaced, emptied or not this replica; a new replica must be initialised)"
        return None

    def _mark(self) -> None:
        self._makedirs("")
        self.raw_upload(MARKER, [f"This directory is the root of the Onitu service {self.service}.\n".encode()], 0)

    # -- reading --------------------------------------------------------------------------------------------------

    def raw_stat(self, path: str) -> Stat | None:
        """One MLST."""
        facts = self._facts(path)
        return _stat(path, facts) if facts is not None else None

    def raw_children(self, directory: str) -> Iterable[tuple[str, Any]]:
        """One MLSD. A name holding a line break comes as two lines, the second without facts: both dropped (the
        first names nothing that exists)."""
        try:
            listed = self._mlsd(directory)
        except ftplib.error_perm as exc:
            if not _missing(exc):
                raise
            raise FileNotFoundError(str(exc)) from None
        entries: list[tuple[str, dict[str, str]]] = []
        for name, facts in listed:
            if "type" in facts:
                entries.append((name, facts))
            elif entries:
                cut = entries.pop()[0]
                self.accept(f"{directory}/{cut}\n{name}" if directory else f"{cut}\n{name}")  # (reported)
        return entries

    def entry(self, path: str, info: Any) -> Stat | None:
        """From the MLSD facts."""
        return _stat(path, info)

    def _mlsd(self, directory: str) -> list[tuple[str, dict[str, str]]]:
        with self.session() as conn:
            entries = list(conn.mlsd(self.full(directory), FACTS))
            conn.voidcmd("TYPE I")  # ftplib lists in ASCII mode; transfers and REST need binary
            return entries

    def raw_read(self, path: str, offset: int, length: int) -> bytes:
        """Read a range (``length`` -1: to the end) on one pooled connection."""
        with self.session() as conn:
            try:
                sock = conn.transfercmd(f"RETR {self.full(path)}", rest=offset or None)
            except ftplib.error_perm as exc:
                if str(exc).startswith("554"):  # REST past the end: nothing there to read
                    return b""
                if _missing(exc):  # (a directory too)
                    raise FileNotFoundError(str(exc)) from None
                raise
            parts, got, ended = [], 0, False
            try:
                while length < 0 or got < length:
                    data = sock.recv(min(1 << 16, length - got) if length >= 0 else 1 << 16)
                    if not data:
                        ended = True
                        break
                    parts.append(data)
                    got += len(data)
            finally:
                sock.close()
            try:
                conn.voidresp()
            except (ftplib.error_temp, ftplib.error_perm):
                if ended:
                    raise  # a transfer that failed, not one we cut short ("426 transfer aborted")
            return b"".join(parts)

    # -- staging primitives ---------------------------------------------------------------------------------------

    def raw_size(self, path: str) -> int | None:
        """SIZE of a file, None if absent."""
        facts = self._facts(path)
        return int(facts.get("size", 0)) if facts is not None else None

    def raw_upload(self, path: str, chunks: Iterable[bytes], offset: int) -> None:
        """STOR (after REST ``offset`` to continue a staged file) fed from ``chunks``."""
        with self.session() as conn:
            sock = conn.transfercmd(f"STOR {self.full(path)}", rest=offset or None)
            try:
                for data in chunks:
                    sock.sendall(data)
            finally:
                if isinstance(sock, ssl.SSLSocket):
                    with contextlib.suppress(OSError, ssl.SSLError):
                        sock.unwrap()
                sock.close()
                conn.voidresp()

    def raw_replace(self, src: str, dst: str) -> None:
        """RNFR/RNTO over ``dst``."""
        self._on_paths("rename", src, dst)

    def raw_remove(self, path: str) -> None:
        """DELE one file."""
        self._on_paths("delete", path)

    def _on_paths(self, operation: str, *paths: str) -> None:
        """``FTP.operation`` on the server's names of ``paths``; a 550 answer (no such file) as FileNotFoundError."""
        try:
            self._command(operation, *map(self.full, paths))
        except ftplib.error_perm as exc:
            if not _missing(exc):
                raise
            raise FileNotFoundError(str(exc)) from None

    def raw_rmdir(self, path: str) -> None:
        """RMD an empty directory."""
        self._command("rmd", self.full(path))

    def raw_empty(self, path: str) -> bool:
        """MLSD lists nothing but the directory itself."""
        return not any(facts.get("type", "").lower() not in ("cdir", "pdir") for _, facts in self._mlsd(path))

    def raw_rename(self, src: str, dst: str) -> None:
        """RNFR/RNTO."""
        self._command("rename", self.full(src), self.full(dst))

    # -- namespace ------------------------------------------------------------------------------------------------

    def mkdir(self, path: str) -> Stat:
        """Create a directory and its parents."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            self._makedirs(path)
        self.known_dir(path)
        return Stat(path, True, 0, 0, "d")

    def _makedirs(self, path: str) -> None:
        parts = path.split("/") if path else []
        for depth in range(len(parts) + 1):
            current = "/".join(parts[:depth])
            if current and current in self._dirs:
                continue
            facts = self._facts(current)
            if facts is None:
                try:
                    self.ftp("mkd", self.full(current))
                except ftplib.error_perm:  # "550 File exists": another transfer made it since we looked
                    facts = self._facts(current)
                    if facts is None:
                        raise
            if facts is not None and facts.get("type", "").lower() not in ("dir", "cdir"):
                raise self.error(DriverError, current, "a file is in the way")
