"""CURVE keys: the server's key pair, client key pairs, and the directory of client keys the server accepts.

Layout under ``DATA/keys``: ``NAME.key`` (public) and ``NAME.key_secret`` (secret, mode 600) per key pair, in
ZeroMQ's certificate format; ``authorized/NAME.key`` holds the public keys of the clients the server lets in.
A server creates its own pair and one authorized ``client`` pair on first start, so a client on the same machine
(same data dir) connects over CURVE with no setup; remote clients get their public key authorized with
``onitu keys allow``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq

from onitu.space.errors import SpaceError

SERVER, CLIENT = "server", "client"


class KeysError(SpaceError):
    """A key file is missing or malformed."""

    code = "keys"


@dataclass(frozen=True)
class KeyInfo:
    name: str
    public: str
    has_secret: bool
    authorized: bool
    fingerprint: str


def fingerprint(public: str | bytes) -> str:
    """A short name for a z85 public key, the one server logs use: ``SHA256:`` and 16 hex digits."""
    raw = public.encode() if isinstance(public, str) else public
    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:16]


def keys_dir(data_dir: Path) -> Path:
    return data_dir / "keys"


def authorized_dir(data_dir: Path) -> Path:
    return keys_dir(data_dir) / "authorized"


def create_pair(data_dir: Path, name: str, authorize: bool = False) -> Path:
    """Create ``NAME.key`` + ``NAME.key_secret``; optionally authorize it. Returns the secret file."""
    if not name or "/" in name or name.startswith("."):
        raise KeysError(f"bad key name {name!r}")
    kdir = keys_dir(data_dir)
    kdir.mkdir(parents=True, exist_ok=True)
    if (kdir / f"{name}.key_secret").exists():
        raise KeysError(f"key pair {name!r} already exists in {kdir}")
    from zmq.auth import create_certificates  # here: zmq.auth is a sixth of a space client's import

    public, secret = create_certificates(kdir, name)
    os.chmod(secret, 0o600)
    if authorize:
        allow(data_dir, Path(public))
    return Path(secret)


def allow(data_dir: Path, public_file: Path) -> Path:
    """Authorize a client public key file (copied into ``authorized/``)."""
    _public, _ = load_pair(public_file)
    adir = authorized_dir(data_dir)
    adir.mkdir(parents=True, exist_ok=True)
    dest = adir / public_file.name
    if dest.resolve() != public_file.resolve():
        if dest.exists() and load_pair(dest)[0] != _public:
            raise KeysError(f"another key named {dest.stem!r} is authorized already; copy {public_file} under "
                            "another name first")
        shutil.copyfile(public_file, dest)
    return dest


def revoke(data_dir: Path, name: str) -> bool:
    target = authorized_dir(data_dir) / f"{name}.key"
    if target.exists():
        target.unlink()
        return True
    return False


def load_pair(path: Path) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a ``.key`` or ``.key_secret`` file."""
    from zmq.auth import load_certificate  # here: an ipc client (a sub-make's) reads no keys

    try:
        public, secret = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeysError(f"cannot read key file {path}: {exc}") from exc
    if public is None or len(public) != 40:
        raise KeysError(f"{path} holds no valid CURVE public key")
    return public, secret


def ensure_server_keys(data_dir: Path) -> tuple[bytes, bytes]:
    """The server's key pair, created (with an authorized local ``client`` pair) on first use."""
    kdir = keys_dir(data_dir)
    secret_file = kdir / f"{SERVER}.key_secret"
    if not secret_file.exists():
        create_pair(data_dir, SERVER)
        if not (kdir / f"{CLIENT}.key_secret").exists():
            create_pair(data_dir, CLIENT, authorize=True)
    public, secret = load_pair(secret_file)
    if secret is None:
        raise KeysError(f"{secret_file} holds no secret key")
    return public, secret


def list_keys(data_dir: Path) -> list[KeyInfo]:
    kdir, adir = keys_dir(data_dir), authorized_dir(data_dir)
    allowed = {load_pair(p)[0] for p in adir.glob("*.key")} if adir.is_dir() else set()
    out = []
    for path in sorted(kdir.glob("*.key")) if kdir.is_dir() else []:
        public, _ = load_pair(path)
        name = path.stem
        out.append(KeyInfo(name, public.decode(), (kdir / f"{name}.key_secret").exists(), public in allowed,
                           fingerprint(public)))
    for path in sorted(adir.glob("*.key")) if adir.is_dir() else []:
        if not (kdir / path.name).exists():
            public = load_pair(path)[0]
            out.append(KeyInfo(path.stem, public.decode(), False, True, fingerprint(public)))
    return out


def client_keys(data_dir: Path, name: str = CLIENT) -> tuple[bytes, bytes]:
    """A client's key pair from the data dir."""
    public, secret = load_pair(keys_dir(data_dir) / f"{name}.key_secret")
    if secret is None:
        raise KeysError(f"{name}.key_secret holds no secret key")
    return public, secret


def server_public_key(data_dir: Path) -> bytes:
    return load_pair(keys_dir(data_dir) / f"{SERVER}.key")[0]


def configure_client(sock: zmq.Socket, server_key: bytes, public: bytes, secret: bytes) -> None:
    sock.curve_serverkey = server_key
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def ephemeral_server(ctx: zmq.Context, bind: str) -> tuple[zmq.Socket, str]:
    """A CURVE ROUTER bound to ``bind`` with a key pair made for it alone; (socket, its public key as text).

    For side channels (file transfers) whose key is published in the space, which only its clients can read.
    """
    public, secret = zmq.curve_keypair()
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_secretkey = secret
    sock.linger = 0
    sock.bind(bind)
    return sock, public.decode()


def ephemeral_client(ctx: zmq.Context, endpoint: str, server_key: str) -> zmq.Socket:
    """A CURVE DEALER connected to an :func:`ephemeral_server`, with a throwaway key pair of its own."""
    sock = ctx.socket(zmq.DEALER)
    configure_client(sock, server_key.encode(), *zmq.curve_keypair())
    sock.linger = 0
    sock.connect(endpoint)
    return sock
