"""Which CURVE clients the server lets in, and what it says about those it turns away.

The ZAP authenticator (a thread of pyzmq's) asks :meth:`Keyring.callback` about each new CURVE connection. The
answer comes from ``keys/authorized/*.key``, read again whenever that directory changes (looked at twice a
second). ZAP only runs at the handshake, so a key revoked later would keep its open connections: the server asks
:meth:`Keyring.allows` about every request from a CURVE socket (the key is the message's ``User-Id``) and refuses
those of a revoked key, and :meth:`Keyring.reload` reports the keys that just lost their place so their sessions
are ended at once.

Refused handshakes (an unknown key, a plain client at a CURVE endpoint, a client that expects another server key)
are seen through the socket's monitor (:mod:`onitu.space.peers`): counted (``handshakes_refused`` in ``space
stats``) and logged, at most a line every few seconds per kind, naming the fingerprint of a refused key (``onitu
keys list`` shows fingerprints).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from onitu.space import auth
from onitu.space.auth import fingerprint
from onitu.space.quietlog import QuietLog

log = logging.getLogger("onitu.space.keyring")

HANDSHAKE_FAILED = {
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "its key is not authorized",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "it does not speak CURVE with this server's key",
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "the connection failed during the handshake",
}
RELOAD_EVERY = 0.5


class Keyring:
    """The server's CURVE key pair, the authorized client keys, and the record of refused handshakes."""

    def __init__(self, ctx: zmq.Context, key_home: Path, counters: Counter[str]) -> None:
        self.ctx, self.key_home, self.counters = ctx, key_home, counters
        self.public_key, self.secret = auth.ensure_server_keys(key_home)
        self.dir = auth.authorized_dir(key_home)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names: dict[str, str] = {}  # authorized z85 public key -> key name
        self.revoked: dict[str, str] = {}  # the same, for keys revoked while this server ran
        self._stamp: tuple[int, int] | None = None
        self._refused: list[str] = []  # keys the ZAP thread turned away, for the loop to log
        self._lock = threading.Lock()
        self._quiet = QuietLog(log)
        self.reload()
        self._auth = ThreadAuthenticator(ctx)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self)

    # ---- admission -----------------------------------------------------------------------------------------

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP's question (from the authenticator's thread): may this z85 key connect?"""
        text = key.decode("ascii", "replace")
        if text in self.names:
            return True
        stamp = self._dir_stamp()
        if stamp is not None and stamp != self._stamp and text in self._read_names():
            return True  # authorized a moment ago: the loop's next reload catches up
        with self._lock:
            self._refused.append(text)
        return False

    def allows(self, user_id: str) -> bool:
        """May a request from a connection made with this key (its ``User-Id``) go on?"""
        return user_id in self.names

    def name_of(self, user_id: str) -> str:
        """The key's file name (``NAME.key``) if known, else its fingerprint."""
        return self.names.get(user_id) or self.revoked.get(user_id) or fingerprint(user_id)

    def reload(self) -> set[str]:
        """Read ``authorized/`` again if it changed; returns the keys no longer authorized."""
        stamp = self._dir_stamp()
        if stamp is None or stamp == self._stamp:
            return set()
        self._stamp = stamp
        names = self._read_names()
        revoked = set(self.names) - set(names)
        self.revoked.update((key, self.names[key]) for key in revoked)
        self.names = names  # one assignment: the ZAP thread sees the old dict or the new one
        for key in revoked:
            log.info("key %s (%s) was revoked: its connections are refused from now on", self.name_of(key),
                     fingerprint(key))
        return revoked

    def _dir_stamp(self) -> tuple[int, int] | None:
        try:
            return self.dir.stat().st_mtime_ns, len(list(self.dir.glob("*.key")))
        except OSError as exc:
            self._quiet.warn("keys", "cannot read %s: %s", self.dir, exc)
            return None

    def _read_names(self) -> dict[str, str]:
        names = {}
        for path in sorted(self.dir.glob("*.key")):
            try:
                names[auth.load_pair(path)[0].decode()] = path.stem
            except auth.KeysError as exc:
                self._quiet.warn("keys", "ignoring %s", exc)
        return names

    # ---- refused handshakes --------------------------------------------------------------------------------

    def handshake_failed(self, kind: int, endpoint: str) -> None:
        """The monitor of a CURVE socket reported a refused handshake at ``endpoint``."""
        why = HANDSHAKE_FAILED.get(kind)
        if why is None:
            return
        self.counters["handshakes_refused"] += 1
        if kind != zmq.EVENT_HANDSHAKE_FAILED_AUTH:  # those are logged with their key by log_refused
            self._quiet.warn(f"handshake {why}", "refused a client at %s: %s", endpoint, why)
        self.log_refused()

    def log_refused(self) -> None:
        """Log the keys the ZAP thread turned away since the last call."""
        with self._lock:
            refused, self._refused = self._refused, []
        for key in refused:
            self._quiet.warn(f"key {key}", "refused CURVE key %s: not in %s (authorize it with `onitu keys allow`)",
                             fingerprint(key), self.dir)

    def close(self) -> None:
        self._auth.stop()
