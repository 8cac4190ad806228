"""The sync hub's tuples in the space, and the checked conversion of observations and orders to plain values.

Every tuple starts with its tag. Plugs and the referee write and read them; nothing read from the space is trusted:
``*_from_wire`` functions raise ValueError naming what is wrong, and the readers drop (and log) such tuples.

- ``(PLUG, service, info)``: a live plug, session-leased (its transfer endpoint, key, secret, availability).
- ``(KNOWN, service)``: the service's root was initialised once; a root without its marker is then unavailable.
- ``(REPORT, service, plug_id, seq, body)``: observations ``{"folder", "scan", "entries": [[path, obs|None]]}``
  (an observation: ``[kind, sha256, size, mtime_ns]``);
  ``scan`` is ``"begin"``/``"part"``/``"end"`` for a full listing in parts, or None for changes; ``set_aside``
  (optional): ``[[conflict copy, original]]`` names the plug's driver renamed because they collided.
- ``(SKIPPED, service, body)``: what a plug's driver leaves out or refused, per folder (``onitu status --skipped``):
  ``{"folders": {folder: {"count", "paths": {path: {reason, since, count, ...}}}}}``.
- ``(ORDER, service, order_id, body)``: work for a plug; ``(DONE, service, plug_id, seq, body)``: its result,
  numbered with the plug's reports (the referee applies both in the order the plug saw things).
- ``(META, "folder/path", record)``: the agreed version of a path and who holds it (see :mod:`onitu.sync.state.ledger`);
  folder and path make one key because the space indexes a tuple's first two elements: found at once, not by a
  walk through every record of the folder.
- ``(CONFLICT, folder, conflict_path, info)``, ``(PENDING, folder, service, info)``: conflict copies, and
  deletions held for approval.
- ``(REQUEST, request_id, body)`` / ``(REPLY, request_id, body)``: a command to the referee, from the hub client
  (:mod:`onitu.sync.hub`): ``{"op": "approve"|"reject", "folder", "service"}`` or ``{"op": "resolve", "pattern",
  "keep", "folder"}``; the reply is ``{"ok": true, ...}`` or ``{"ok": false, "error"}``.
- ``(STATUS, body)``, ``(PROGRESS, service, body)``: what the referee and plugs publish for ``onitu status``.
- ``(SETTLED, folder, digest)``: every path of the folder was decided under the settings of that digest (see
  :mod:`onitu.sync.state.settled`).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Final

from onitu.space.errors import RequestExpired, SpaceError
from onitu.sync.decide.metadata import SHA256, FileMeta
from onitu.sync.decide.plan import Action, Copy, Delete, KeepConflict, Mkdir, Move, Observed, paths_of
from onitu.sync.drivers.contract import safe_path

log = logging.getLogger(__name__)

PLUG: Final = "sync.plug"
KNOWN: Final = "sync.known"
REPORT: Final = "sync.report"
ORDER: Final = "sync.order"
DONE: Final = "sync.done"
META: Final = "sync.meta"
CONFLICT: Final = "sync.conflict"
PENDING: Final = "sync.pending"
REQUEST: Final = "sync.request"
QUERY: Final = "sync.query"  # (QUERY, id, folder, directory, limit): a read the referee answers as it arrives
REPLY: Final = "sync.reply"
STATUS: Final = "sync.status"
PROGRESS: Final = "sync.progress"
RESCAN: Final = "sync.rescan"
SKIPPED: Final = "sync.skipped"
SETTLED: Final = "sync.settled"

KEEP: Final = ("current", "conflict", "both")  # what a resolve request may keep of a conflict

_KINDS = ("file", "dir")


def _text(value: Any, what: str, limit: int = 4096) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{what} must be text of at most {limit} characters")
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {value!r:.40}")
    return value


def meta_key(folder: str, path: str) -> str:
    """The key of a path's record: folder names have no ``/``."""
    return f"{folder}/{path}"


def split_meta_key(key: Any) -> tuple[str, str]:
    """(folder, path) of a record's key; ValueError if it is not one."""
    if not isinstance(key, str) or "/" not in key:
        raise ValueError(f"not a folder/path key: {key!r:.80}")
    folder, _, path = key.partition("/")
    return folder, safe_path(path)


def obs_to_wire(obs: Observed | None) -> list | None:
    """``[kind, sha256, size, mtime_ns]``, or None for "nothing there" (the fingerprint stays with the plug)."""
    return None if obs is None else [obs.kind, obs.sha256, obs.size, obs.mtime_ns]


def obs_from_wire(value: Any) -> Observed | None:
    """The inverse of :func:`obs_to_wire`, checked."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise ValueError("an observation must be [kind, sha256, size, mtime_ns]")
    kind, sha, size, mtime = value
    if kind not in _KINDS:
        raise ValueError(f"observation kind must be 'file' or 'dir', not {kind!r:.40}")
    if type(mtime) is not int:
        raise ValueError("observation mtime_ns must be an integer")
    if kind == "file":
        if type(size) is not int or size < 0 or not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise ValueError("a file observation needs a size and a sha256 of 64 lowercase hex digits")
    elif sha is not None or size:
        raise ValueError("a directory observation has no sha256 and size 0")
    return Observed(kind, sha, size, mtime)


def entries_from_wire(value: Any) -> list[tuple[str, Observed | None]]:
    """``[[path, obs|None], ...]`` checked: every path through :func:`safe_path`."""
    if not isinstance(value, list | tuple):
        raise ValueError("entries must be a list")
    out = []
    for item in value:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ValueError("an entry must be [path, observation]")
        out.append((safe_path(_text(item[0], "path")), obs_from_wire(item[1])))
    return out


def set_aside_from_wire(value: Any) -> list[tuple[str, str]]:
    """A report's ``set_aside``: ``[[conflict copy, original path], ...]`` (names a plug's driver renamed because
    they collided with another's), checked like paths; absent is empty."""
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(i, list | tuple) and len(i) == 2 for i in value):
        raise ValueError("set_aside must be a list of [conflict copy, original path]")
    return [(safe_path(_text(c, "path")), safe_path(_text(o, "path"))) for c, o in value]


def action_to_wire(action: Action, rows: bool = False) -> dict[str, Any] | list[Any]:
    """An order's action as a plain dict (``op`` names its type) or, with ``rows``, as a list: its op, then its
    fields in :data:`_ORDER_FIELDS`'s order, a copy's hash as its 32 raw bytes (70 bytes where the dict took 190)."""
    if isinstance(action, Copy):
        wire = {"op": "copy", "path": action.path, "on": action.to, "sources": list(action.sources),
                "sha256": action.sha256, "size": action.size, "replaces": action.replaces,
                "source_path": action.source_path}
    elif isinstance(action, Mkdir):
        wire = {"op": "mkdir", "path": action.path, "on": action.on}
    elif isinstance(action, Delete):
        wire = {"op": "delete", "path": action.path, "on": action.on, "replaces": action.replaces}
    elif isinstance(action, Move):
        wire = {"op": "move", "path": action.src, "dst": action.dst, "on": action.on, "replaces": action.replaces}
    elif isinstance(action, KeepConflict):
        wire = {"op": "conflict", "path": action.path, "on": action.on, "dst": action.conflict,
                "replaces": action.replaces}
    else:
        raise ValueError(f"{type(action).__name__} is not an order")
    if not rows:
        return wire
    return [wire["op"], *(bytes.fromhex(wire[key]) if key == "sha256" else wire[key]
                          for key in _ORDER_FIELDS[wire["op"]])]


# An action's fields as a row holds them, after its op.
_ORDER_FIELDS = {
    "copy": ("path", "on", "sources", "sha256", "size", "replaces", "source_path"),
    "mkdir": ("path", "on"),
    "delete": ("path", "on", "replaces"),
    "move": ("path", "dst", "on", "replaces"),
    "conflict": ("path", "dst", "on", "replaces"),
}
_ORDER_KEYS = {op: {"op", *fields} for op, fields in _ORDER_FIELDS.items()}


def action_as_dict(value: Any) -> Any:
    """An action in either form as a dict (``op`` and its fields; a copy's hash in hex), unchecked but for its shape:
    :func:`action_from_wire` checks it."""
    if not isinstance(value, list | tuple):
        return value
    fields = _ORDER_FIELDS.get(value[0]) if value and isinstance(value[0], str) else None
    if fields is None or len(value) != len(fields) + 1:
        raise ValueError("an order's action as a row must be [op, fields...] with op one of " + ", ".join(_ORDER_KEYS))
    value = dict(zip(("op", *fields), value, strict=True))
    if value["op"] == "copy":
        if type(value["sha256"]) is not bytes or len(value["sha256"]) != 32:
            raise ValueError(f"{value['path']!r:.80}: a copy's sha256 must be 32 bytes in a row")
        value["sha256"] = value["sha256"].hex()
    return value


def action_from_wire(value: Any) -> Action:
    """The inverse of :func:`action_to_wire` (either form), checked (paths through :func:`safe_path`)."""
    value = action_as_dict(value)
    if not isinstance(value, dict) or value.get("op") not in _ORDER_KEYS:
        raise ValueError("an order must be a mapping whose 'op' is one of " + ", ".join(_ORDER_KEYS))
    op = value["op"]
    if set(value) != _ORDER_KEYS[op]:
        raise ValueError(f"{op} order: expected the keys {sorted(_ORDER_KEYS[op])}")
    path, on = safe_path(_text(value["path"], "path")), _text(value["on"], "service", 255)
    if op == "mkdir":
        return Mkdir(path, on)
    replaces = value["replaces"]
    if op == "copy":
        if replaces is not None:
            _text(replaces, "replaces", 256)
        sources = value["sources"]
        if not isinstance(sources, list | tuple) or not all(isinstance(s, str) for s in sources):
            raise ValueError("copy order: sources must be a list of service names")
        source_path, sha256 = value["source_path"], value["sha256"]
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):  # (a FileMeta to check it costs 10 times more)
            raise ValueError(f"{path}: a file needs a sha256 of 64 lowercase hex digits, not {sha256!r:.70}")
        return Copy(path, on, tuple(sources), sha256, _int(value["size"], "size"), replaces,
                    None if source_path is None else safe_path(_text(source_path, "source_path")))
    replaces = _text(replaces, "replaces", 256)
    if op == "delete":
        return Delete(path, on, replaces)
    dst = safe_path(_text(value["dst"], "dst"))
    return Move(path, dst, on, replaces) if op == "move" else KeepConflict(path, on, dst, replaces)


def order_body(folder: str, actions: list[Action], metas: list[FileMeta | None], rows: bool) -> dict[str, Any]:
    """An order's body: its actions and the agreed version each brings about (None: none), as dicts, or as rows
    for a plug that reads them (its plug tuple says ``"rows": true``; a plug of an earlier version reads dicts only).
    A row is a third of a dict: a hub's orders and their results, one each per file, are most of what its space
    commits, ships to its secondary and keeps in its history during a sync."""
    return {"folder": folder, "actions": [action_to_wire(a, rows) for a in actions],
            "metas": [None if m is None else m.to_row() if rows else m.to_wire() for m in metas]}


def order_from_wire(body: Any) -> tuple[list[Action], list[FileMeta | None]]:
    """An order's (or its result's) actions and agreed versions, in either form, checked: ValueError says what is
    wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("actions"), list | tuple) \
            or not isinstance(body.get("metas"), list | tuple):
        raise ValueError("an order body must be a mapping with actions and metas")
    actions = [action_from_wire(a) for a in body["actions"]]
    if len(body["metas"]) != len(actions):
        raise ValueError("an order needs as many metas as actions")
    return actions, [_meta(paths_of(action)[0], value) for action, value in zip(actions, body["metas"], strict=True)]


def _meta(path: str, value: Any) -> FileMeta | None:
    if value is None:
        return None
    meta = FileMeta.from_row(path, value) if isinstance(value, list | tuple) else FileMeta.from_wire(value)
    if meta.path != path:
        raise ValueError(f"an order's agreed version of {meta.path!r:.80} is for its action on {path!r:.80}")
    return meta


def take_all(space: Any, templates: list[tuple]) -> None:
    """Take the tuples of ``templates`` (emptying the list), 256 to an atomic batch; those already gone are skipped.

    A batch that fails because one of its tuples is gone (taken twice: a report applied from the space's backlog and
    again from the stream that replaced a lost one) is split in halves until that one is found: a few round trips.
    Taking the 256 one by one, on a space busy with a million files' listings, took long enough for the watchdog to
    take the referee for hung."""
    consumed = _distinct(templates)
    templates.clear()
    groups = deque(consumed[i:i + 256] for i in range(0, len(consumed), 256))
    while groups:
        group = groups.popleft()
        try:
            space.batch([("discard", t) for t in group])  # taken, not sent back: we have them
        except RequestExpired:
            if len(group) > 1:
                half = len(group) // 2
                groups.extendleft((group[half:], group[:half]))
        except SpaceError as exc:  # the space is away: what is left is taken next time
            log.info("taking %d consumed tuples later: %s", len(group) + sum(map(len, groups)), exc)
            templates.extend(group)
            for rest in groups:
                templates.extend(rest)
            return


def _distinct(templates: list[tuple]) -> list[tuple]:
    """``templates`` without repeats, in order (as they are, if some cannot be hashed)."""
    try:
        return list(dict.fromkeys(templates))
    except TypeError:
        return templates[:]
