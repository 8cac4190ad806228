"""Recursive inotify on one directory tree, read in the thread that uses the events.

A library observer reads the kernel's events in one thread, groups them in a second and dispatches them from a
third, each handing every event to the next through a queue: for a replica being filled, three thread hand-offs
(and the futex calls and GIL switches they cost) per file written, more than the write itself. Here the watcher's
own thread reads the inotify descriptor, pairs the halves of a move and keeps the watches of the directories.

Directories are watched as they appear; what a new directory (or one moved in) holds when its watch is added is
reported as created, since it may have been made before the watch. After the kernel's queue overflowed,
:attr:`Inotify.overflowed` is set: events were lost, and the caller watches and lists the tree again.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
from dataclasses import dataclass

log = logging.getLogger(__name__)

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF = 0x100, 0x200, 0x400
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
# What can change an entry. Left out, so the kernel does not even queue them: opens, reads (every chunk the plug
# serves, every hash), a change of mode or times alone.
MASK = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
        | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name
_READ = 1 << 16  # bytes read at once
MOVE_WAIT = 0.02  # seconds a move's first half waits for its second before it counts as a move out of the tree

_libc = ctypes.CDLL(None, use_errno=True)


def _checked(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


@dataclass(slots=True)
class RawEvent:
    """One change: ``event_type`` is created, deleted, modified, closed (after a write) or moved (to ``dest_path``)."""

    event_type: str
    src_path: str
    is_directory: bool
    dest_path: str = ""


class Inotify:
    """The watches of one tree and the events they report; not thread-safe (one thread reads, and closes)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.overflowed = False
        self._fd = _checked(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._dirs: dict[int, str] = {}  # watch descriptor -> the directory's absolute path
        self._full_told = False
        try:
            self.watch_tree(root)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Drop every watch (closing the descriptor does it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def watch_tree(self, top: str) -> list[RawEvent]:
        """Watch ``top`` and every directory below it; what they hold, as creations."""
        found, stack = [], [top]
        while stack:
            directory = stack.pop()
            if not self._watch(directory):
                continue
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        is_dir = entry.is_dir(follow_symlinks=False)
                        found.append(RawEvent("created", entry.path, is_dir))
                        if is_dir:
                            stack.append(entry.path)
            except OSError:
                continue  # gone or unreadable meanwhile: its own events (or the listing) tell
        return found

    def _watch(self, directory: str) -> bool:
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(directory), MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code == errno.ENOSPC and not self._full_told:  # the user's inotify watches are all taken
                self._full_told = True
                log.warning("%s: cannot watch %s (fs.inotify.max_user_watches reached): its changes are seen "
                            "by the periodic rescan only", self.root, directory)
            return False
        self._dirs[wd] = directory
        return True

    def read(self, timeout: float) -> list[RawEvent]:
        """The events that arrive within ``timeout`` seconds (all those queued, once one is)."""
        if not self._poll.poll(timeout * 1000):
            return []
        events: list[RawEvent] = []
        moves: dict[int, int] = {}  # cookie -> index in events of the first half of a move not paired yet
        self._parse(self._read(), events, moves)
        if moves and self._poll.poll(MOVE_WAIT * 1000):
            self._parse(self._read(), events, moves)
        for at in moves.values():  # moved out of the tree: gone, with the watches below it
            if events[at].is_directory:
                self._unwatch(events[at].src_path)
        return events

    def _read(self) -> bytes:
        try:
            return os.read(self._fd, _READ)
        except BlockingIOError:
            return b""

    def _parse(self, data: bytes, events: list[RawEvent], moves: dict[int, int]) -> None:
        offset = 0
        while offset < len(data):
            wd, mask, cookie, length = _HEADER.unpack_from(data, offset)
            name = data[offset + _HEADER.size:offset + _HEADER.size + length].rstrip(b"\0")
            offset += _HEADER.size + length
            if mask & IN_Q_OVERFLOW:
                self.overflowed = True
            elif mask & IN_IGNORED:
                self._dirs.pop(wd, None)
            elif name and wd in self._dirs:
                self._event(os.path.join(self._dirs[wd], os.fsdecode(name)), mask, cookie, events, moves)

    def _event(self, path: str, mask: int, cookie: int, events: list[RawEvent], moves: dict[int, int]) -> None:
        is_dir = bool(mask & IN_ISDIR)
        if mask & IN_MOVED_FROM:
            moves[cookie] = len(events)
            events.append(RawEvent("deleted", path, is_dir))  # until its second half makes it a move
        elif mask & IN_MOVED_TO and cookie in moves:
            at = moves.pop(cookie)
            events[at] = RawEvent("moved", events[at].src_path, is_dir, path)
            if is_dir:
                self._moved(events[at].src_path, path)
        elif mask & (IN_CREATE | IN_MOVED_TO):
            events.append(RawEvent("created", path, is_dir))
            if is_dir:
                events.extend(self.watch_tree(path))
        elif mask & IN_DELETE:
            events.append(RawEvent("deleted", path, is_dir))
        elif mask & IN_CLOSE_WRITE:
            events.append(RawEvent("closed", path, is_dir))
        elif mask & IN_MODIFY:
            events.append(RawEvent("modified", path, is_dir))

    def _below(self, top: str) -> list[int]:
        return [wd for wd, path in self._dirs.items() if path == top or path.startswith(top + os.sep)]

    def _moved(self, src: str, dst: str) -> None:
        """The watches of a directory moved inside the tree follow it (the kernel keeps them: only names change)."""
        for wd in self._below(src):
            self._dirs[wd] = dst + self._dirs[wd][len(src):]

    def _unwatch(self, top: str) -> None:
        for wd in self._below(top):
            del self._dirs[wd]
            _libc.inotify_rm_watch(self._fd, wd)
