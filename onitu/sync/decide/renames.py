"""Renames, found by content and propagated as moves instead of a copy plus a deletion.

On one replica, a clean deletion of ``src`` and a creation of ``dst`` (where nothing was agreed) with the same
content hash are a rename, when that hash names exactly one deleted and one created file there (several empty files
renamed at once stay copies and deletions: correct, only less cheap). A deleted directory whose whole subtree
(relative names and contents) reappears under exactly one created directory is a directory rename, and covers
everything below it.

Another replica gets a :class:`~onitu.sync.decide.plan.Move` only if it holds exactly what was renamed (the same
subtree at ``src``), has nothing at ``dst``, and the reconcile pass had ordered it both the deletions under ``src``
and the copies or new directories under ``dst``: the move then replaces exactly those orders, so rules, conflicts
and held deletions are decided as for any other change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from onitu.fairsort import fair_sorted
from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import (
    Action,
    Content,
    Copy,
    Delete,
    Mkdir,
    Move,
    Replica,
    content_of,
    is_clean,
    tree_content_id,
)
from onitu.sync.drivers.contract import is_under, parent_of

Tree = dict[str, Content]  # relative name ('' for the top) -> content


def _trees(contents: Mapping[str, Content], roots: set[str]) -> dict[str, Tree]:
    """The subtree below each of ``roots`` (the root itself at ''), in one pass over ``contents``."""
    trees: dict[str, Tree] = {root: {"": contents[root]} for root in roots}
    for path, content in contents.items():
        parent = parent_of(path)
        while parent:
            if parent in trees:
                trees[parent][path[len(parent) + 1:]] = content
            parent = parent_of(parent)
    return trees


def find_renames(replica: Replica, ancestors: Mapping[str, FileMeta]) -> list[tuple[str, str]]:
    """The (src, dst) renames made on ``replica`` since it last held the agreed versions; directories first."""
    held = {p: c for p, meta in replica.held.items() if (c := content_of(meta)) is not None}
    gone = fair_sorted(p for p in held if p not in replica.now and is_clean(replica.held[p], ancestors.get(p)))
    if not gone:  # nothing renamed: no look at what is new (a first sync's million files, their trees)
        return []
    now = {p: obs.content for p, obs in replica.now.items()}
    new = fair_sorted(p for p in now if p not in held and content_of(ancestors.get(p)) is None)
    gone_dirs = [p for p in gone if held[p][0] == "dir"]
    new_dirs = [p for p in new if now[p][0] == "dir"] if gone_dirs else []
    old_trees, new_trees = _trees(held, set(gone_dirs)), _trees(now, set(new_dirs))
    pairs: list[tuple[str, str]] = []
    for src in gone_dirs:  # sorted, so a directory comes before its subdirectories
        if any(is_under(src, s) for s, _ in pairs):
            continue
        found = [d for d in new_dirs if new_trees[d] == old_trees[src] and not any(is_under(d, t) for _, t in pairs)]
        if len(found) == 1:
            pairs.append((src, found[0]))
    old_files: dict[str | None, list[str]] = defaultdict(list)
    new_files: dict[str | None, list[str]] = defaultdict(list)
    for path in gone:
        if held[path][0] == "file" and not any(is_under(path, s) for s, _ in pairs):
            old_files[held[path][1]].append(path)
    for path in new:
        if now[path][0] == "file" and not any(is_under(path, t) for _, t in pairs):
            new_files[now[path][1]].append(path)
    for sha, sources in old_files.items():
        targets = new_files.get(sha, [])
        if len(sources) == 1 and len(targets) == 1:
            pairs.append((sources[0], targets[0]))
    return pairs


def deleted(replica: Replica, ancestors: Mapping[str, FileMeta]) -> set[str]:
    """The paths ``replica`` held and no longer has, renames aside: a rename deletes nothing."""
    gone = {p for p in replica.held if p not in replica.now}
    if not gone:
        return gone
    moved = [src for src, _ in find_renames(replica, ancestors)]
    return {p for p in gone if not any(is_under(p, src) for src in moved)}


def apply_moves(actions: list[Action], live: Sequence[Replica], renames: Mapping[str, list[tuple[str, str]]],
                ) -> list[Action]:
    """``actions`` with, on every other replica that can take it, each rename's copies and deletions made a move."""
    index: dict[tuple[str, str, str], int] = {}
    for i, action in enumerate(actions):
        if isinstance(action, Delete):
            index["delete", action.on, action.path] = i
        elif isinstance(action, Copy | Mkdir):
            index["put", action.to if isinstance(action, Copy) else action.on, action.path] = i
    dropped: set[int] = set()
    moves: list[Action] = []
    for source in live:
        if not renames[source.service]:
            continue
        held = {p: c for p, meta in source.held.items() if (c := content_of(meta)) is not None}
        trees = _trees(held, {src for src, _ in renames[source.service] if held[src][0] == "dir"})
        for src, dst in renames[source.service]:
            tree = trees.get(src) or {"": held[src]}
            for other in live:
                if other is source or not _takes(other, src, dst, tree):
                    continue
                wanted = [index.get((kind, other.service, _join(top, rel)))
                          for rel in tree for kind, top in (("delete", src), ("put", dst))]
                if all(i is not None and i not in dropped for i in wanted):
                    dropped.update(i for i in wanted if i is not None)
                    expected = tree_content_id(tree) if tree[""][0] == "dir" else other.now[src].content_id
                    moves.append(Move(src, dst, other.service, expected))
    return [action for i, action in enumerate(actions) if i not in dropped] + moves


def _takes(replica: Replica, src: str, dst: str, tree: Tree) -> bool:
    """Whether ``replica`` holds exactly ``tree`` at ``src`` and nothing at ``dst``."""
    top = replica.now.get(src)
    if top is None or top.content != tree[""] or dst in replica.now:
        return False
    if top.kind == "file":
        return True
    below = {p: obs.content for p, obs in replica.now.items() if is_under(p, src) or is_under(p, dst)}
    return not any(is_under(p, dst) for p in below) and _trees(below, {src})[src] == tree


def _join(top: str, rel: str) -> str:
    return f"{top}/{rel}" if rel else top
