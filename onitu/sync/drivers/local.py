"""The local disk driver: a directory on this machine, watched with inotify (through ``watchdog``).

Options: ``root`` (absolute; ``~`` expanded), ``mount`` (true: the root must be a mount point, so an unmounted disk
is unavailable even before the marker check) and ``settle`` (seconds a file must stay unchanged before it is
reported; files being written are not shipped half-written).

A root is available when it is a readable directory holding the marker ``.onitu-root`` (and a mount point if
``mount``). The marker is what tells "this replica is empty" from "this is not the replica any more": an unmounted
mount point, a directory recreated empty or a disk swapped for another all lack it.

Symbolic links are neither listed nor followed, and no operation resolves outside the root, so a link planted in a
replica cannot make the hub read or write elsewhere. Special files (FIFOs, sockets, devices) are never opened: an
open of a FIFO waits for a writer for ever, which stopped every sync from the replica; they are skipped like links.
Names that are not valid UTF-8, or that :func:`safe_path` refuses (backslashes, control characters),
are skipped: they cannot be synced faithfully. So are entries this process may not read (an unreadable directory is
not an empty one: what was synced from it stands until it can be read again). Each skipped path goes to the
driver's skipped map with its reason, logged once (``onitu status --skipped``). Two names that are one path once
NFC-normalised are untangled: the second is set aside as a conflict copy (:mod:`.local_names`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat as st_mode
import unicodedata
from collections.abc import Container, Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onitu.sync.drivers import local_stage
from onitu.sync.drivers.contract import (
    ANY,
    CHUNK,
    MARKER,
    Availability,
    Callback,
    CaseCollision,
    Changed,
    Driver,
    DriverError,
    HashMismatch,
    NotFound,
    Precondition,
    RootUnavailable,
    Stat,
    UnsafePath,
    WholeFile,
    safe_path,
    temp_name,
)
from onitu.sync.drivers.local_names import Found, kind_of, scan_directory, unreadable, untangle
from onitu.sync.drivers.local_own import OwnWrites, stat_of
from onitu.sync.drivers.local_watch import LocalWatcher
from onitu.sync.drivers.naming import shown

log = logging.getLogger(__name__)
INSIDE_KEPT = 4096  # directories remembered as resolving inside the root


class LocalOptions(BaseModel):
    """The local driver's options."""

    model_config = ConfigDict(extra="forbid")

    root: Path
    mount: bool = False
    settle: float = Field(0.5, ge=0, le=3600, allow_inf_nan=False)

    @field_validator("root")
    @classmethod
    def _absolute(cls, root: Path) -> Path:
        root = root.expanduser()
        if not root.is_absolute():
            raise ValueError("must be an absolute path")
        return root


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalDriver(Driver):
    """A directory tree on a local (or locally mounted) filesystem."""

    name = "local"
    Options = LocalOptions

    def __init__(self, service: str, options: BaseModel, state: Path | None = None) -> None:
        assert isinstance(options, LocalOptions)
        super().__init__(service, options, state)
        self._root, self._mount = str(options.root), options.mount
        self._real_root = os.path.realpath(self._root)
        self.settle = options.settle
        self._watcher: LocalWatcher | None = None
        self.own_writes = OwnWrites(self._root)
        self._inside: dict[str, tuple[int, int]] = {}  # directory -> (device, inode) when found inside the root
        self._folds_case: bool | None = None  # whether the disk under the root ignores case (None: not known yet)

    @property
    def root(self) -> str:
        """The root directory."""
        return self._root

    # -- availability ---------------------------------------------------------------------------------------------

    def available(self) -> Availability:
        """Present, a directory, readable, a mount point if required, and marked as this replica's root."""
        try:
            if not os.path.isdir(self._root):
                return Availability(False, f"root {self._root} is missing or not a directory")
            if self._mount and not os.path.ismount(self._root):
                return Availability(False, f"root {self._root} is not a mount point (unmounted?)")
            with os.scandir(self._root):
                pass
            if not self.unmarked_ok and not os.path.isfile(os.path.join(self._root, MARKER)):
                return Availability(False, f"root {self._root} has no {MARKER} marker (replaced, emptied or "
                                           f"unmounted; a new replica must be initialised)")
        except OSError as exc:
            return Availability(False, f"root {self._root} cannot be read: {exc.strerror or exc}")
        return Availability(True)

    def initialise(self) -> None:
        """Create the root (with its parents) and its marker."""
        if self._mount and not os.path.ismount(self._root):
            raise self.error(RootUnavailable, "", "not a mount point: refusing to initialise the directory under it")
        try:
            os.makedirs(self._root, exist_ok=True)
            marker = os.path.join(self._root, MARKER)
            with open(marker, "w", encoding="utf-8") as file:
                file.write(f"This directory is the root of the Onitu service {self.service}.\n")
                file.flush()
                os.fsync(file.fileno())
            _fsync_dir(self._root)
        except OSError as exc:
            raise self._failure(exc, "") from None
        self._real_root = os.path.realpath(self._root)

    def _ensure(self) -> None:
        if not (status := self.available()):
            raise self.error(RootUnavailable, "", status.reason)

    def _failure(self, exc: OSError, path: str) -> DriverError:
        if not (status := self.available()):
            return self.error(RootUnavailable, path, status.reason)
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return self.error(NotFound, path, "no such file or directory")
        return self.error(DriverError, path, exc.strerror or str(exc))

    # -- paths ----------------------------------------------------------------------------------------------------

    def _resolve(self, path: str) -> str:
        """The on-disk name of a validated relative path, checked to stay inside the root."""
        return self._resolve_checked(path)[1]

    def _resolve_checked(self, path: str, parents: set[str] | None = None) -> tuple[str, str]:
        """(the path validated, its on-disk name checked to stay inside the root).

        Names are compared NFC-normalised, so a file stored decomposed (as macOS writes them) is found from the
        composed name the hub uses instead of being duplicated beside it. ``parents``: directories already found
        inside the root and there, during a batch of writes (each looked at once for the batch; found ones added).
        """
        path = self.check(path)
        full = os.path.join(self._root, path)
        if not path.isascii() and not os.path.lexists(full):  # (ASCII names have one normal form only)
            full = self._root
            for part in path.split("/"):
                candidate = os.path.join(full, part)
                if not part.isascii() and not os.path.lexists(candidate):
                    candidate = os.path.join(full, self._match_nfc(full, part))
                full = candidate
        parent = os.path.dirname(full)
        if parents is None:
            self._check_inside(parent, path)
        elif parent not in parents and self._check_inside(parent, path):
            parents.add(parent)
        return path, full

    def _check_inside(self, parent: str, path: str) -> bool:
        """Refuse a parent directory that resolves outside the root (through a symbolic link); whether it is there.

        A directory once resolved inside the root is remembered by identity (device, inode): while the name still
        leads to that same directory, one stat replaces walking every component again.
        """
        try:
            info = os.stat(parent)
        except OSError:
            info = None
        if info is not None and self._inside.get(parent) == (info.st_dev, info.st_ino):
            return st_mode.S_ISDIR(info.st_mode)
        real = os.path.realpath(parent)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise self.error(UnsafePath, path, "resolves outside the root (through a symbolic link)")
        if info is not None:
            if len(self._inside) >= INSIDE_KEPT:
                self._inside.clear()
            self._inside[parent] = (info.st_dev, info.st_ino)
        return info is not None and st_mode.S_ISDIR(info.st_mode)

    @staticmethod
    def _match_nfc(directory: str, part: str) -> str:
        try:
            names = os.listdir(directory)
        except OSError:
            return part
        return next((n for n in names if unicodedata.normalize("NFC", n) == part), part)

    def _folds(self) -> bool:
        """Whether the disk under the root ignores case (the marker's name in capitals finds it)."""
        if self._folds_case is None and os.path.lexists(os.path.join(self._root, MARKER)):
            self._folds_case = os.path.lexists(os.path.join(self._root, MARKER.upper()))
        return bool(self._folds_case)

    def _other_case(self, full: str) -> bool:
        """Whether ``full`` finds an entry only because the disk ignores case ("a.txt" finding "A.txt"). Listing
        the directory costs O(n) a call: done only on disks that ignore case."""
        if not self._folds() or full == self._root:
            return False
        directory, base = os.path.split(full)
        return os.path.lexists(full) and base not in os.listdir(directory)

    def _lstat(self, full: str) -> os.stat_result:
        """``os.lstat`` of the entry of exactly this name: another's whose name differs only in case is not it."""
        info = os.lstat(full)
        if self._other_case(full):
            raise FileNotFoundError(errno.ENOENT, "only a name that differs in case is there", full)
        return info

    def _check_case(self, full: str, path: str) -> None:
        """Refuse to write ``path`` where the disk ignores case and finds, on the way to it, an entry whose name
        differs only in case: "a.txt" would replace "A.txt", and "docs/y.txt" would land in "Docs/". The error
        names the entry that clashes (``path`` or a directory above it): the caller sets the content apart there."""
        if not self._folds() or full == self._root:
            return
        at, parts = self._root, os.path.relpath(full, self._root).split(os.sep)
        for i, part in enumerate(parts):  # the on-disk names, as many as the path's (NFC matching keeps the count)
            below = os.path.join(at, part)
            if not os.path.lexists(below):
                return
            if part not in os.listdir(at):  # O(entries) a directory: on disks that ignore case only
                clash = "/".join(path.split("/")[:i + 1])
                what = "its name" if clash == path else f"the name of its directory {clash}"
                raise self.error(CaseCollision, clash,
                                 f"{what} differs only in case from an existing one on a case-insensitive disk")
            at = below

    def _check_precondition(self, full: str, path: str, replaces: Precondition) -> None:
        if replaces is ANY:
            return
        try:
            current = stat_of(path, self._lstat(full)).fingerprint
        except (FileNotFoundError, NotADirectoryError):
            current = None
        if current != replaces:
            raise self.error(Changed, path, f"changed meanwhile (expected {replaces or 'nothing'}, found "
                                            f"{current or 'nothing'})")

    # -- reading --------------------------------------------------------------------------------------------------

    def stat(self, path: str) -> Stat | None:
        """The entry at ``path`` (None if absent, not a regular file or directory, or a directory it may not read)."""
        path, full = self._resolve_checked(path)
        try:
            info = self._lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            self._ensure()  # "nothing there" only from a root that is there (the root is checked only then: cheap)
            self.skipped.discard(path, refused=False)
            return None
        except OSError as exc:
            raise self._failure(exc, path) from None
        problem = kind_of(info.st_mode) or (unreadable(full, info) if st_mode.S_ISDIR(info.st_mode) else None)
        if problem is not None:
            self.skipped.add(path, problem, unreadable=st_mode.S_ISDIR(info.st_mode))
            return None
        self.skipped.discard(path, refused=False)
        return stat_of(path, info)

    def readable_again(self) -> bool:
        """Whether an entry skipped as unreadable can be read now, or is gone."""
        for path in self.skipped.unreadable_paths():
            try:
                full = self._resolve(path)
                info = os.lstat(full)
            except (OSError, DriverError):
                return True
            if unreadable(full, info) is None:
                return True
        return False

    def list(self, prefix: str = "") -> Iterator[Stat]:
        """Walk below ``prefix``; raises :class:`RootUnavailable` at the end if the root went away meanwhile.

        What it skips (links, special files, names that cannot be synced, entries it may not read) goes to the
        skipped map, replacing what the last listing of ``prefix`` found; colliding names are set aside first.
        """
        self._ensure()
        prefix = self.check(prefix, root_ok=True)
        stack = [(self._resolve(prefix) if prefix else self._root, prefix)]
        skipped: dict[str, tuple[str, bool]] = {}
        while stack:
            directory, rel = stack.pop()
            try:
                found = untangle(self.service, directory, rel, scan_directory(directory), self.skipped)
            except (FileNotFoundError, NotADirectoryError):
                if directory == self._root or rel == prefix:
                    raise self._failure(FileNotFoundError(), rel) from None
                continue  # removed while we walked
            except PermissionError as exc:
                if directory == self._root or rel == prefix:
                    raise self._failure(exc, rel) from None
                skipped[rel] = (f"cannot be read ({exc.strerror})", True)  # made unreadable since its parent's look
                continue
            except OSError as exc:
                raise self._failure(exc, rel) from None
            for entry in found:
                child, problem = self._listed(rel, entry)
                if problem is not None:
                    skipped[child] = problem
                    continue
                yield stat_of(child, entry.info)
                if st_mode.S_ISDIR(entry.info.st_mode):
                    stack.append((entry.full, child))
        self._ensure()  # a listing of a root that vanished half-way must not look like mass deletion
        self.skipped.listed(prefix, skipped)

    def _listed(self, rel: str, entry: Found) -> tuple[str, tuple[str, bool] | None]:
        """The service path of a listed entry, and why it is skipped ((reason, unreadable), or None)."""
        name = f"{rel}/{entry.name}" if rel else entry.name
        try:
            child = safe_path(name)
        except ValueError as exc:
            return shown(name), (f"a name that cannot be synced: {exc}", False)
        problem = kind_of(entry.info.st_mode)
        if problem is not None:
            return child, (problem, False)
        problem = unreadable(entry.full, entry.info)
        return child, None if problem is None else (problem, True)

    def _open(self, path: str) -> int:
        # No availability check first: a file that opens is there, and whoever reads it checks its hash; a failure
        # names the root's outage (see _failure).
        full = self._resolve(path)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block the open
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self.error(UnsafePath, path, "is a symbolic link") from None
            raise self._failure(exc, path) from None
        mode = os.fstat(fd).st_mode
        if not (st_mode.S_ISREG(mode) or st_mode.S_ISDIR(mode)):
            os.close(fd)
            raise self.error(UnsafePath, path, "is not a regular file (a FIFO, socket or device): not read")
        return fd

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes ``offset`` to ``offset + length`` (or the end)."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        fd = self._open(path)
        try:
            if length is None:
                length = max(os.fstat(fd).st_size - offset, 0)
            parts, got = [], 0
            while got < length:
                data = os.pread(fd, min(length - got, CHUNK), offset + got)
                if not data:
                    break
                parts.append(data)
                got += len(data)
            return b"".join(parts)
        except IsADirectoryError:
            raise self.error(DriverError, path, "is a directory") from None
        finally:
            os.close(fd)

    def chunks(self, path: str, offset: int = 0, size: int = CHUNK) -> Iterator[bytes]:
        """The file from ``offset`` on, through one open file (not one open per chunk)."""
        fd = self._open(path)
        try:
            while data := os.pread(fd, size, offset):
                yield data
                offset += len(data)
        except IsADirectoryError:
            raise self.error(DriverError, path, "is a directory") from None
        finally:
            os.close(fd)

    # -- writing --------------------------------------------------------------------------------------------------

    def _staging(self, path: str, parents: set[str] | None = None) -> tuple[str, str, str]:
        """(the path validated, its on-disk name, its staging name); ``parents`` as :meth:`_resolve_checked`'s."""
        path, full = self._resolve_checked(path, parents)
        return path, full, os.path.join(os.path.dirname(full), temp_name(os.path.basename(full)))

    def write(
        self, path: str, chunks: Iterable[bytes], *, expected_sha256: str, resume_from: int = 0,
        replaces: Precondition = ANY,
    ) -> Stat:
        """Stage, verify, fsync, give it its name (see :meth:`Driver.write` and :mod:`.local_stage`)."""
        self._ensure()
        path, full, temp = self._staging(path)
        staged = self._stage(path, full, temp, chunks, resume_from, sync=True)
        return self._publish(path, full, temp, staged, expected_sha256, replaces)

    def write_many(self, files: list[WholeFile]) -> list[Stat | DriverError]:
        """Stage every file, make them all durable, then name those that verify, and fsync each directory once for
        them all (a file and a directory fsync apiece cost more than a small file's transfer)."""
        self._ensure()
        done: list[Stat | DriverError | None] = [None] * len(files)
        staged: list[tuple[int, str, str, str, local_stage.Staged]] = []  # index, path, full, temp, staged
        parents: set[str] = set()  # their directories, each looked at once (a replacement mid-batch is not seen)
        try:
            for n, one in enumerate(files):
                try:
                    path, full, temp = self._staging(one.path, parents)
                    staged.append((n, path, full, temp,
                                   self._stage(path, full, temp, [one.data], 0, sync=False, parents=parents)))
                except DriverError as exc:
                    done[n] = exc
            local_stage.durable(s for *_, s in staged)
        except BaseException:
            for *_, temp, one in staged:
                local_stage.abandon(one, temp)
            raise
        directories: dict[str, int] = {}  # each open once for the files published in it, then fsynced once
        try:
            for at, (n, path, full, temp, one) in enumerate(staged):
                try:
                    done[n] = self._publish(path, full, temp, one, files[n].sha256, files[n].replaces,
                                            directories=directories)
                except DriverError as exc:
                    done[n] = exc
                except BaseException:
                    for *_, later_temp, later in staged[at + 1:]:
                        local_stage.abandon(later, later_temp)
                    raise
            for name in sorted(directories):  # before any of them is reported written
                os.fsync(directories[name])
        finally:
            for fd in directories.values():
                os.close(fd)
        assert all(d is not None for d in done)
        return done  # type: ignore[return-value]

    def _stage(self, path: str, full: str, temp: str, chunks: Iterable[bytes], resume_from: int, *,
               sync: bool, parents: Container[str] = ()) -> local_stage.Staged:
        failed: list[BaseException] = []

        def source() -> Iterator[bytes]:
            try:
                yield from chunks
            except BaseException as exc:
                failed.append(exc)
                raise

        parent = os.path.dirname(full)
        self._check_case(full, path)  # before its directories are made: "docs/sub" would make "Docs/sub"
        try:
            if parent not in parents and not os.path.isdir(parent):
                os.makedirs(parent, exist_ok=True)
            return local_stage.stage(temp, source(), resume_from, sync=sync)
        except ValueError as exc:
            raise self.error(DriverError, path, str(exc)) from None
        except OSError as exc:
            if exc in failed:  # the sender's failure (a lost connection, say) is the caller's to handle
                raise
            raise self._failure(exc, path) from None

    def _publish(self, path: str, full: str, temp: str, staged: local_stage.Staged, expected_sha256: str,
                 replaces: Precondition, *, directories: dict[str, int] | None = None) -> Stat:
        """Check the staged file and give it its name (closing it in any case); durably, unless ``directories`` is
        given: then its directory is opened there (once for many files) for the caller to fsync."""
        try:
            if staged.digest != expected_sha256:
                raise self.error(HashMismatch, path, f"sha256 {staged.digest} written, {expected_sha256} expected")
            self._check_precondition(full, path, replaces)
            self._check_case(full, path)
        except BaseException:
            local_stage.abandon(staged, temp)
            raise
        # What was written, taken from the staged file itself: a look at its name once published could find
        # someone's write made just after, which would then pass for ours (its change never reported, its
        # fingerprint cached with our content's hash). Recorded as ours before it has its name: the watcher can
        # see the name at once, and took it for someone else's file when it came first (a change to settle, then
        # report: work for nothing, per file).
        written = self.own_writes.add(stat_of(path, staged.info))
        try:
            directory = None
            if directories is not None:
                parent = os.path.dirname(full)
                if parent not in directories:
                    directories[parent] = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
                directory = directories[parent]
            local_stage.publish(staged, temp, full, directory=directory)
            return written
        except OSError as exc:
            self.own_writes.drop(path)
            self._unlink_quietly(temp)
            raise self._failure(exc, path) from None

    @staticmethod
    def _unlink_quietly(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def partial(self, path: str) -> int:
        """Bytes staged by an interrupted write to ``path``."""
        self._ensure()
        try:
            return os.lstat(self._staging(path)[2]).st_size
        except (FileNotFoundError, NotADirectoryError):
            return 0

    def discard(self, path: str) -> None:
        """Remove the staged data of an interrupted write."""
        self._ensure()
        self._unlink_quietly(self._staging(path)[2])

    def delete(self, path: str, *, replaces: Precondition = ANY) -> None:
        """Remove a file or an empty directory."""
        self._ensure()
        full = self._resolve(path)
        try:
            info = self._lstat(full)
            self._check_precondition(full, path, replaces)
            if st_mode.S_ISDIR(info.st_mode):
                os.rmdir(full)
            else:
                os.unlink(full)
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise self.error(DriverError, path, "directory not empty") from None
            raise self._failure(exc, path) from None

    def move(self, src: str, dst: str, *, replaces: Precondition = ANY) -> Stat:
        """Rename ``src`` to ``dst`` (which must not exist), creating the parents of ``dst``."""
        self._ensure()
        src_full, dst_full = self._resolve(src), self._resolve(dst)
        dst = self.check(dst)
        try:
            src_info = self._lstat(src_full)
            self._check_precondition(src_full, src, replaces)
            if os.path.lexists(dst_full) and not os.path.samestat(src_info, os.lstat(dst_full)):
                raise self.error(DriverError, dst, "destination exists")
            os.makedirs(os.path.dirname(dst_full), exist_ok=True)
            os.rename(src_full, dst_full)
            return stat_of(dst, os.lstat(dst_full))
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise self.error(DriverError, src, f"cannot move a directory into itself ({dst})") from None
            raise self._failure(exc, src) from None

    def mkdir(self, path: str) -> Stat:
        """Create a directory and its parents."""
        self._ensure()
        full = self._resolve(path)
        path = self.check(path)
        try:
            self._check_case(full, path)  # "docs" would find "Docs"
            if not os.path.isdir(full):
                os.makedirs(full)
                return self.own_writes.add(stat_of(path, os.lstat(full)))
            return stat_of(path, os.lstat(full))
        except FileExistsError:
            raise self.error(DriverError, path, "a file is in the way") from None
        except OSError as exc:
            raise self._failure(exc, path) from None

    def wrote(self, path: str, fingerprint: str) -> bool:
        """Whether the entry at ``path``, now ``fingerprint``, is exactly as this driver just wrote it (the event it
        caused need not be reported: whoever wrote it knows). Each write answers once."""
        return self.own_writes.seen(path, fingerprint)

    # -- change detection -----------------------------------------------------------------------------------------

    def watch(self, callback: Callback, *, scan_interval: float = 600.0) -> None:
        """Watch the root with inotify, scanning at start, after an overflow and every ``scan_interval`` s."""
        if self._watcher is not None:
            raise RuntimeError("already watching")
        self._watcher = LocalWatcher(self, callback, scan_interval)
        self._watcher.start()

    def close(self) -> None:
        """Stop the watcher, if any."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
