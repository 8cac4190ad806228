"""The ``api`` section of ``onitu.yaml``: where the hub's REST API and web page listen, and their TLS files.

``listen: ""`` turns the API off; ``$ONITU_API_LISTEN`` changes the default. A listen address other than loopback
is refused unless ``tls`` names a certificate and its key: the token would otherwise cross the network in clear.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from onitu.schema import Located, Model

DEFAULT_LISTEN = "127.0.0.1:7651"
ENV_LISTEN = "ONITU_API_LISTEN"  # the default's override, as ONITU_DATA is the data directory's


def split_listen(listen: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[v6]:PORT`` for IPv6); ValueError naming what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, like {DEFAULT_LISTEN!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def in_use(listen: str) -> bool:
    """Whether something already listens on ``listen`` (another Onitu's API, most often)."""
    host, port = split_listen(listen)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to take
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_listen(listen: str = DEFAULT_LISTEN, tries: int = 50) -> str:
    """``listen``, or the first of the next ``tries`` ports on its host that nothing listens on (as is if all are
    taken)."""
    host, port = split_listen(listen)
    for candidate in range(port, min(port + tries, 65536)):
        address = f"[{host}]:{candidate}" if ":" in host else f"{host}:{candidate}"
        if not in_use(address):
            return address
    return listen


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(value: str) -> str:
    if value:
        split_listen(value)
    return value


_File = Annotated[Path, AfterValidator(Path.expanduser)]


class TlsConfig(Model):
    """A certificate (PEM, with its chain) and its private key, for an API reachable from other hosts."""

    cert: _File
    key: _File


class ApiConfig(Model):
    """The API process: REST, server-sent events, the web page and the metrics, on one HTTP listener."""

    listen: Annotated[str, AfterValidator(_listen)] = Field(
        default_factory=lambda: os.environ.get(ENV_LISTEN, DEFAULT_LISTEN), validate_default=True)
    tls: TlsConfig | None = None

    @model_validator(mode="after")
    def _tls_off_loopback(self) -> Self:
        if self.listen and self.tls is None and not is_loopback(split_listen(self.listen)[0]):
            raise Located(("listen",), "listening beyond this machine needs TLS: set api.tls.cert and api.tls.key "
                                       "(or listen on 127.0.0.1)")
        return self

    @property
    def url(self) -> str:
        """The page's address (without the token)."""
        host, port = split_listen(self.listen)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"{'https' if self.tls else 'http'}://{shown}:{port}/"
