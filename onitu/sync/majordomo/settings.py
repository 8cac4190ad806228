"""The ``majordomo:`` section of the hub's ``onitu.yaml``: where it listens and which agents' keys may join which
folders, in which mode.

``mode`` is said from the agent's side: ``r`` the agent receives the folder (its own changes are not taken), ``w``
it only sends, ``rw`` both.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator

from onitu.schema import Model, Name


def _tcp(value: str) -> str:
    if value and not value.startswith("tcp://"):
        raise ValueError("must be a tcp:// endpoint such as tcp://0.0.0.0:7652 (agents dial it over CURVE)")
    return value


class ClientGrant(Model):
    """What one agent key may do: the hub folders it may join, and at most which mode."""

    folders: list[Name] = []
    mode: Literal["r", "w", "rw"] = "rw"


class MajordomoConfig(Model):
    """The majordomo runs under ``onitu start`` when ``listen`` is set."""

    listen: Annotated[str, AfterValidator(_tcp)] = ""
    clients: dict[Name, ClientGrant] = {}
