"""The agents' services, recorded in the space so the referee decides for them and ``onitu status`` names them.

``(REMOTE, service, {"agent": NAME, "folders": {folder: {"path": path, "mode": mode, "options": {...}}}})`` is
written by the majordomo when an agent is admitted (never by an agent) and stays when the agent goes away: its
services are then offline (their plugs are gone), not forgotten, and nothing is inferred from their absence.
``mode`` is already the hub's folder option (``r``: the service's changes are read, ``w``: the hub writes to it),
see :func:`service_mode`; ``options`` are the other folder options agent.yaml gives the service (blacklist,
file_size, ...), which the referee applies to it as to a service of the hub.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from onitu.config import Config
from onitu.sync.drivers.contract import safe_path
from onitu.sync.settings import ServiceConfig, ServiceFolderConfig
from onitu.sync.state.plugs import NOT_RUNNING

log = logging.getLogger(__name__)

REMOTE: Final = "sync.remote"
# what an agent may do (said from its side) -> the hub's folder mode of its service (said from the hub's side)
_HUB_SIDE = {"r": {"w"}, "w": {"r"}, "rw": {"r", "w"}}


def service_mode(granted: str, folder_mode: str, asked: str = "rw") -> str | None:
    """The hub's mode for an agent's service in a folder: what the key was granted (``r``: the agent receives),
    within the folder's own mode and the mode agent.yaml ``asked`` for the service (said as in onitu.yaml); None
    when nothing may flow."""
    both = _HUB_SIDE[granted] & set(folder_mode) & set(asked)
    return "".join(sorted(both)) or None


def folder_config(body: dict[str, Any]) -> ServiceFolderConfig:
    """The folder options of a REMOTE tuple's folder entry (ValueError if they are not valid options)."""
    options = body.get("options") or {}
    if not isinstance(options, dict) or {"path", "mode"} & options.keys():
        raise ValueError("bad options")
    return ServiceFolderConfig.model_validate({**options, "path": body["path"], "mode": body["mode"]})


def record(agent: str, folders: dict[str, ServiceFolderConfig]) -> dict[str, Any]:
    """The body of a REMOTE tuple: ``folders`` maps a folder to the service's options there (its hub mode set)."""
    return {"agent": agent, "folders": {f: {"path": c.path, "mode": c.mode, "options": c.model_dump(
        mode="json", exclude_unset=True, exclude={"path", "mode"})} for f, c in folders.items()}}


def services(found: list[tuple]) -> dict[str, dict[str, Any]]:
    """service -> REMOTE body, from the tuples read; malformed ones are logged and left out."""
    out = {}
    for tup in found:
        try:
            _, name, body = tup
            if not isinstance(name, str) or not isinstance(body, dict) or not isinstance(body.get("agent"), str):
                raise ValueError("not a service and a mapping with its agent")
            for folder in body["folders"].values():
                safe_path(folder["path"], root_ok=True)
                folder_config(folder)
            out[name] = body
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring a malformed %s tuple: %s", REMOTE, exc)
    return out


def with_remote(config: Config, remote: dict[str, dict[str, Any]]) -> Config:
    """``config`` with the agents' services added (those of its folders only; a hub service keeps its name)."""
    added = {}
    for name, body in remote.items():
        folders = {f: folder_config(o) for f, o in body["folders"].items() if f in config.folders}
        if name not in config.services and folders:
            added[name] = ServiceConfig.model_construct(driver="remote", options={}, folders=folders)
    return config.model_copy(update={"services": {**config.services, **added}}) if added else config


def mark_remote(status: dict[str, Any], remote: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The referee's status with each agent service marked ``remote: AGENT``, and ``offline`` while its agent is
    not connected (its plug is gone; what it holds is kept)."""
    for info in status.get("folders", {}).values():
        for service, row in info.get("services", {}).items():
            if service in remote:
                row["remote"] = remote[service]["agent"]
                if row.get("state") in (f"unavailable: {NOT_RUNNING}", "starting"):
                    row["state"] = f"offline (agent {row['remote']} not connected)"
    return status
