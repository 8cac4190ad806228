"""What runs on the space for make, as plain data for the API and the web page: builds with their targets done,
running and waiting, and the workers with their slots."""

from __future__ import annotations

from collections import Counter
from typing import Any

from onitu.make.tasks import BUILD, DONE, TASK, WORKER, WORKING


def builds(space: Any) -> dict[str, Any]:
    """``{"builds": [{build, dir, done, running, waiting}], "workers": [{id, host, slots, busy}]}``."""
    states: dict[str, Counter[str]] = {}
    busy: Counter[str] = Counter()
    for state, template in (("waiting", (TASK, None, None, None)), ("running", (WORKING, None, None, None)),
                            ("done", (DONE, None, None, None))):
        for tup in space.read_all(template):
            states.setdefault(str(tup[1]), Counter())[state] += 1
            if state == "running":
                busy[str(tup[3])] += 1
    found = []
    for _, build, info in space.read_all((BUILD, None, None)):
        counts = states.get(str(build), Counter())
        directory = info.get("dir") if isinstance(info, dict) else None
        found.append({"build": build, "dir": directory, **{k: counts[k] for k in ("done", "running", "waiting")}})
    workers = []
    for _, worker, info in space.read_all((WORKER, None, None)):
        info = info if isinstance(info, dict) else {}
        workers.append({"id": worker, "host": info.get("host"), "slots": info.get("slots"),
                        "busy": busy[str(worker)]})
    return {"builds": found, "workers": workers}
