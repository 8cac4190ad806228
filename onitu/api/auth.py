"""The API's token: one secret in ``DATA/api.token`` (mode 0600), created at first start, sent by every client as
``Authorization: Bearer TOKEN``.

Why this also makes the API safe against cross-site requests: a browser attaches no ``Authorization`` header on its
own (unlike a cookie), and a page of another origin cannot read the token or set that header on a request here
(the API answers no CORS preflight). The web page keeps the token it was opened with (``#token=``, never sent to a
server) and sends it itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from fastapi import HTTPException, Request, status

TOKEN_FILE = "api.token"


def token_path(data: Path) -> Path:
    return data / TOKEN_FILE


def ensure_token(data: Path) -> str:
    """The token of this data directory, made (0600, atomically: two starts never get two tokens) if missing."""
    path = token_path(data)
    data.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        return read_token(data)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(tmp, path)  # fails if another start made one first: then that one is the token
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return read_token(data)


def read_token(data: Path) -> str:
    """The token; FileNotFoundError if there is none yet, PermissionError if others may read it."""
    path = token_path(data)
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} may be read by other users; `chmod 600 {path}`, or delete it for a new one")
    token = path.read_text().strip()
    if len(token) < 16:
        raise PermissionError(f"{path} holds no usable token (delete it: a new one is made at the next start)")
    return token


class Bearer:
    """The FastAPI dependency that lets a request in only with the token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def __call__(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), self._token):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid token is needed: send `Authorization: "
                                "Bearer TOKEN` with the token in DATA/api.token (`onitu open` prints the page's "
                                "address with it)", headers={"WWW-Authenticate": "Bearer"})
