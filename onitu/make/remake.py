"""Remaking makefiles, as GNU make does before anything else.

Every makefile read and every file an ``include`` named is a goal of a first build: those with a rule (explicit,
or implicit such as ``%.d: %.c``) are brought up to date, even under -n. If any of them changed, everything is
read again from the start (``MAKE_RESTARTS`` counts how often). A required include that is still missing is an
error naming the include line; one read with ``-include`` may fail silently. A makefile that is a double-colon
target with a recipe and no prerequisites would be remade forever, so it is left alone.
"""

from __future__ import annotations

from onitu.make.database import Database
from onitu.make.graph import Graph
from onitu.make.locate import Locator
from onitu.make.session import Session, Special

RESTART, GO = "restart", "go"


def remake_makefiles(db: Database, session: Session, env: dict[str, str]) -> str | int:
    """Bring the makefiles up to date: ``RESTART`` (read them again), ``GO`` (build the goals) or an exit status."""
    goals: list[str] = []
    special = Special()
    session.remade = {}
    for goal in reversed(db.makefile_goals):  # GNU's list of read files is in reverse reading order
        if goal.name in goals or _loops(db, goal.name):
            continue
        goals.append(goal.name)
        if goal.optional:
            special.dontcare.add(goal.name)
        elif not goal.found and goal.where is not None:
            special.goal_errors[goal.name] = f"{goal.where[0]}:{goal.where[1]}: {goal.name}: No such file or directory"
    if not goals:
        return GO
    locate = Locator(db)
    before = {name: locate.mtime(name) for name in goals}
    graph = Graph.build(db, goals)
    for message in graph.messages:
        session.ui.message(message)
    status = session.build(graph, env, special=special)
    changed = any(locate.mtime(name) != before[name] for name in goals if locate.mtime(name) is not None)
    if changed:
        return RESTART
    return status or GO


def _loops(db: Database, name: str) -> bool:
    entry = db.entries.get(name)
    return bool(entry and entry.colons and any(c.recipe is not None and not c.prereqs for c in entry.colons))
