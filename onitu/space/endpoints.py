"""Which endpoints a space server may listen on, and whether each must use CURVE."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

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
