"""Which endpoints a space server may listen on, whether each must use CURVE, and its zmq sockets bound on them."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import zmq

from onitu.space.errors import SpaceError


class ConfigError(SpaceError):
    """The server was given an endpoint or option it cannot use."""

    code = "config"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, insecure_loopback: bool) -> bool:
    """Validate an endpoint; True when it must use CURVE."""
    parts = urlsplit(endpoint)
    if parts.scheme == "ipc" and endpoint[len("ipc://"):]:
        return False
    if parts.scheme != "tcp" or not parts.hostname:
        raise ConfigError(f"endpoint {endpoint!r}: expected ipc://PATH or tcp://HOST:PORT")
    if insecure_loopback:
        if not is_loopback(parts.hostname):
            raise ConfigError(f"endpoint {endpoint!r}: --insecure-loopback only allows 127.0.0.1, ::1 or localhost")
        return False
    return True


def bind_router(ctx: zmq.Context, endpoints: list[str], secret: bytes | None, cap: int) -> tuple[zmq.Socket, list[str]]:
    """A ROUTER bound on ``endpoints`` (a CURVE server with ``secret``), and the endpoints as bound (a tcp port 0
    resolved). A frame over ``cap`` bytes drops its connection in libzmq (the server answers anything over its
    max_frame, below that, with a clear error)."""
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.sndhwm = sock.rcvhwm = 100_000
    sock.maxmsgsize = cap
    if secret is not None:
        sock.curve_server = True
        sock.curve_secretkey = secret
    bound = []
    for ep in endpoints:
        if ep.startswith("ipc://"):
            Path(ep[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            sock.bind(ep)
        except zmq.ZMQError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {ep}: {exc}") from exc
        bound.append(sock.last_endpoint.decode())
    return sock, bound
