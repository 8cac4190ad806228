"""Finding the space and choosing how to talk to it.

Endpoints come from, in order: the ``endpoint`` argument, ``$ONITU_SPACE`` (comma-separated), the ``space.json``
a server publishes in the data dir, then a discovery lookup on the LAN. ``ipc://`` endpoints need no keys;
``tcp://`` ones use CURVE with the server key (argument, data dir or discovery) and this client's key pair
(argument or the data dir's ``client`` pair), unless ``insecure=True`` (a server run with --insecure-loopback).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onitu import paths
from onitu.space import auth
from onitu.space.client import SpaceClient
from onitu.space.core import Security
from onitu.space.errors import Unavailable

if TYPE_CHECKING:
    from onitu.space.aio import AsyncSpaceClient


def read_info(data_dir: Path) -> dict[str, Any] | None:
    """The ``space.json`` a running server publishes in its data dir, or None."""
    try:
        return json.loads((data_dir / "space.json").read_text())
    except (OSError, ValueError):
        return None


def resolve(endpoint: str | Sequence[str] | None, data_dir: Path | None, discovery_port: int | None
            ) -> tuple[list[str], str | None, bool]:
    """(endpoints, server public key, whether that key is known) for the space to use (``discovery_port``: where
    to ask the LAN, None for discovery's default port)."""
    data = data_dir or paths.data_dir()
    if isinstance(endpoint, str):
        return [e.strip() for e in endpoint.split(",") if e.strip()], None, False
    if endpoint:
        return list(endpoint), None, False
    env = os.environ.get("ONITU_SPACE")
    if env:
        return [e.strip() for e in env.split(",") if e.strip()], None, False
    info = read_info(data)
    if info and info.get("endpoints"):
        # a local server: its ipc endpoint is the fastest way in
        endpoints = sorted(info["endpoints"], key=lambda ep: not ep.startswith("ipc://"))
        return endpoints, info.get("public_key"), True
    # here: discovery brings asyncio, which a client given its endpoints (a sub-make, a worker) never needs
    from onitu.space import ring

    try:
        answer = ring.lookup(ring.DEFAULT_PORT if discovery_port is None else discovery_port)
    except Unavailable as exc:
        raise Unavailable(f"no space endpoint given, none running under {data}, and {exc}") from None
    return answer["endpoints"], answer.get("public_key"), True


def security_for(endpoints: list[str], *, server_key: str | bytes | None, client_key: Path | None,
                 insecure: bool, data_dir: Path | None) -> Security | None:
    if insecure or all(ep.startswith("ipc://") for ep in endpoints):
        return None
    data = data_dir or paths.data_dir()
    key = server_key.encode() if isinstance(server_key, str) else server_key
    if key is None and not (auth.keys_dir(data) / f"{auth.SERVER}.key").exists():
        raise auth.KeysError(
            f"{', '.join(endpoints)} needs the server's public key, and {auth.keys_dir(data)} has none: pass it "
            f"(server_key=...: the public key `onitu keys list` shows on the server), or "
            f"insecure=True (--insecure) for a server run with --insecure-loopback")
    if key is None:
        key = auth.server_public_key(data)
    if client_key is not None:
        public, secret = auth.load_pair(client_key)
        if secret is None:
            raise auth.KeysError(f"{client_key} holds no secret key (give the .key_secret file)")
    else:
        public, secret = auth.client_keys(data)
    return Security(key, public, secret)


def _prepare(endpoint: Any, server_key: Any, client_key: Any, insecure: bool, data_dir: str | Path | None,
             discovery_port: int | None) -> tuple[list[str], Security | None]:
    data_dir = Path(data_dir) if data_dir is not None else None  # a str as given by a caller's script
    client_key = Path(client_key) if client_key is not None else None
    endpoints, found_key, known = resolve(endpoint, data_dir, discovery_port)
    if known and found_key is None:  # the server published no key: it listens without CURVE
        insecure = True
    security = security_for(endpoints, server_key=server_key or found_key, client_key=client_key,
                            insecure=insecure, data_dir=data_dir)
    return endpoints, security


def connect(endpoint: str | Sequence[str] | None = None, *, server_key: str | bytes | None = None,
            client_key: str | Path | None = None, insecure: bool = False, data_dir: str | Path | None = None,
            session_ttl: float = 5.0, connect_timeout: float = 10.0,
            discovery_port: int | None = None) -> SpaceClient:
    """A blocking client of the space (see the module docstring for how it is found)."""
    endpoints, security = _prepare(endpoint, server_key, client_key, insecure, data_dir, discovery_port)
    return SpaceClient(endpoints, security=security, session_ttl=session_ttl, connect_timeout=connect_timeout)


async def aconnect(endpoint: str | Sequence[str] | None = None, *, server_key: str | bytes | None = None,
                   client_key: str | Path | None = None, insecure: bool = False, data_dir: str | Path | None = None,
                   session_ttl: float = 5.0, connect_timeout: float = 10.0,
                   discovery_port: int | None = None) -> AsyncSpaceClient:
    """An asyncio client of the space: the same methods as :func:`connect`'s, as coroutines."""
    from onitu.space.aio import AsyncSpaceClient

    endpoints, security = _prepare(endpoint, server_key, client_key, insecure, data_dir, discovery_port)
    client = AsyncSpaceClient(endpoints, security=security, session_ttl=session_ttl,
                              connect_timeout=connect_timeout)
    try:
        await client.open()
    except BaseException:
        await client.close()
        raise
    return client
