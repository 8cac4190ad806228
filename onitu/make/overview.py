"""What runs on the space for make, as plain data for the API and the web page: builds with their targets done,
running and waiting, and the workers with their slots."""

from __future__ import annotations

from collections import Counter
from typing import Any

from onitu.make.tasks import BUILD, DONE, PROGRESS, TASK, WORKER, WORKING


def builds(space: Any) -> dict[str, Any]:
    """``{"builds": [{build, dir, total, done, running, waiting}], "workers": [{id, host, slots, busy}]}``: a
    build's counts are its coordinator's (every target of the build: ``waiting`` counts those not yet started);
    before it published them, the tasks in the space (``total`` None)."""
    states: dict[str, Counter[str]] = {}
    busy: Counter[str] = Counter()
    for state, template in (("waiting", (TASK, None, None, None)), ("running", (WORKING, None, None, None)),
                            ("done", (DONE, None, None, None))):
        for tup in space.read_all(template):
            states.setdefault(str(tup[1]), Counter())[state] += 1
            if state == "running":
                busy[str(tup[3])] += 1
    progress = {str(b): c for _, b, c in space.read_all((PROGRESS, None, None)) if isinstance(c, dict)}
    found = []
    for _, build, info in space.read_all((BUILD, None, None)):
        counts: dict[str, Any] = {"total": None, **states.get(str(build), Counter())}
        told = progress.get(str(build), {})
        if all(type(told.get(k)) is int for k in ("total", "done", "running")):
            counts = {**told, "waiting": max(0, told["total"] - told["done"] - told["running"])}
        directory = info.get("dir") if isinstance(info, dict) else None
        found.append({"build": build, "dir": directory,
                      **{k: counts.get(k, 0) for k in ("total", "done", "running", "waiting")}})
    workers = []
    for _, worker, info in space.read_all((WORKER, None, None)):
        info = info if isinstance(info, dict) else {}
        workers.append({"id": worker, "host": info.get("host"), "slots": info.get("slots"),
                        "busy": busy[str(worker)]})
    return {"builds": found, "workers": workers}
