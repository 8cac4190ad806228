"""``onitu agent --hub tcp://HOST:7652 --hub-key FILE --key NAME [-c agent.yaml]``: a remote sync agent.

It runs one ordinary plug (:class:`onitu.sync.plug.plug.Plug`) per service of ``agent.yaml`` (``folders:`` and
``services:`` as in the hub's file, folders named as on the hub), on this machine, with the agent's own data dir.
Its one connection is the one it dials to the hub's majordomo with its key pair ``NAME`` (made with ``onitu keys
new NAME`` in this data dir, its public half allowed on the hub with ``onitu keys allow NAME.key``); ``--hub-key``
is the hub's public key (``DATA/keys/server.key`` on the hub). Exit status: 0 when stopped, 2 when the hub refuses
the agent or revokes its key.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from onitu import gcpolicy, heaptrim
from onitu.config import Config
from onitu.space.auth import KeysError, client_keys, load_pair
from onitu.sync.majordomo.link import Link
from onitu.sync.majordomo.remote_space import RelayedSpace
from onitu.sync.plug.plug import Plug

log = logging.getLogger(__name__)


class Agent:
    """The plugs of ``config``'s services, over one link to the hub."""

    def __init__(self, config: Config, link: Link) -> None:
        self.config, self.link = config, link
        self.space = RelayedSpace(link)
        self.plugs = [Plug(config, service, self.space) for service in config.services]  # type: ignore[arg-type]
        self.threads: list[threading.Thread] = []
        link.on_end = self._stopping  # before their calls fail: a revoked agent's plugs stop, they do not crash

    def _stopping(self) -> None:
        for plug in self.plugs:
            plug.stop()

    def run(self) -> int:
        """Run the plugs until :meth:`stop` or until the hub refuses or revokes the agent."""
        for plug in self.plugs:
            thread = threading.Thread(target=self._run_plug, args=(plug,), name=f"onitu-plug-{plug.service}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)
        self.link.ended.wait()
        self._stopping()  # (again, in case the link ended before it was told whom to stop)
        for thread in self.threads:
            thread.join(timeout=5)
        return 2 if self.link.fatal else 0

    def _run_plug(self, plug: Plug) -> None:
        try:
            plug.run()
        except Exception as exc:  # a refused or revoked agent ends its plugs this way too
            if not self.link.ended.is_set():
                log.exception("%s: the plug failed", plug.service)
                self.link.close()
            else:
                log.debug("%s: stopped: %s", plug.service, exc)

    def stop(self) -> None:
        self.link.close()

    def close(self) -> None:
        for plug in self.plugs:
            plug.close()


def hello_services(config: Config) -> dict[str, dict[str, dict[str, Any]]]:
    """What the hello says of each service: per folder, its path and the folder options agent.yaml gives it (those
    under ``services:``, over those under ``folders:``); the hub applies them to the service as to one of its own,
    its mode within what the agent's key was granted."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, service in config.services.items():
        out[name] = {}
        for folder, options in service.folders.items():
            shared = config.folders[folder].model_dump(mode="json", exclude_unset=True)
            out[name][folder] = {**shared, **options.model_dump(mode="json", exclude_unset=True), "path": options.path}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run an agent."""
    from onitu import config as config_mod
    from onitu.logs import configure_logging

    configure_logging("INFO")
    gcpolicy.for_big_tables()  # its plugs hold what a hub's do
    heaptrim.after_bursts()
    parser = argparse.ArgumentParser(prog="onitu agent", description=__doc__.splitlines()[0])
    parser.add_argument("--hub", required=True, help="the majordomo's endpoint, tcp://HOST:7652")
    parser.add_argument("--hub-key", required=True, type=Path, help="the hub's public key file (server.key)")
    parser.add_argument("--key", required=True, help="the name of this agent's key pair in its data dir")
    parser.add_argument("-c", "--config", type=Path, default=None, help="agent.yaml (folders and services)")
    args = parser.parse_args(argv)
    if not args.hub.startswith("tcp://"):
        parser.error(f"--hub {args.hub}: expected tcp://HOST:PORT")
    try:
        config = config_mod.load(args.config or config_mod.default_path())
        server_key = load_pair(args.hub_key)[0]
        public, secret = client_keys(config.data, args.key)
    except (config_mod.ConfigError, KeysError) as exc:
        parser.exit(2, f"onitu agent: {exc}\n")
    if not config.services:
        parser.exit(2, f"onitu agent: {config.source}: no services to sync\n")
    link = Link(args.hub, server_key, public, secret, hello_services(config))
    agent = Agent(config, link)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    try:
        return agent.run()
    finally:
        agent.close()
        link.close()
