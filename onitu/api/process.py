"""The API process (``python -m onitu.api``), run by ``onitu start`` as a supervised agent.

uvicorn serves the app on ``api.listen`` (with TLS when ``api.tls`` is set); the heartbeat is answered from the
same event loop, so a stuck loop is seen as a hang and the process restarted. Alongside run the watcher of process
restarts and failovers (:mod:`onitu.api.watcher`). SIGTERM stops it in order (uvicorn's graceful shutdown, bounded:
open event streams are cut after a second; clients resume with ``Last-Event-ID``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

import uvicorn

from onitu import config as config_mod
from onitu.api.app import create_app
from onitu.api.auth import ensure_token
from onitu.api.context import Context
from onitu.api.events import Events
from onitu.api.settings import in_use, split_listen
from onitu.api.watcher import Watcher
from onitu.heartbeat import Responder
from onitu.logs import configure_logging
from onitu.space.aio import AsyncSpaceClient
from onitu.sync.process import connect_patiently

log = logging.getLogger("onitu.api")


async def _aconnect(config: config_mod.Config) -> AsyncSpaceClient:
    from onitu.space import aconnect
    from onitu.space.errors import Unavailable

    for _ in range(150):  # the space may be (re)starting under the same watchdog
        try:
            return await aconnect(os.environ.get("ONITU_SPACE"), data_dir=config.data, session_ttl=5.0)
        except Unavailable:
            await asyncio.sleep(0.2)
    return await aconnect(os.environ.get("ONITU_SPACE"), data_dir=config.data, session_ttl=5.0)


async def serve(ctx: Context) -> None:
    config = ctx.config
    aspace = await _aconnect(config)
    app = create_app(ctx, Events(lambda: aspace))
    host, port = split_listen(config.api.listen)
    tls = config.api.tls
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
        timeout_graceful_shutdown=1, ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None))
    responder = Responder.from_env(lambda: {"listen": config.api.listen})
    if responder is not None:
        responder.attach(asyncio.get_running_loop())
    watcher = asyncio.create_task(Watcher(lambda: ctx.config, aspace).run())
    try:
        await server.serve()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if responder is not None:
            responder.close()
        await aspace.close()


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    parser = argparse.ArgumentParser(prog="onitu-api", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    config = config_mod.load(args.config or config_mod.default_path())
    if not config.api.listen:
        print("the API is off (api.listen is empty)", file=sys.stderr)
        return 2
    if in_use(config.api.listen):  # uvicorn would only say "address already in use"
        log.error("cannot listen on %s: something else does (another Onitu?); set api.listen in %s to a free "
                  "address", config.api.listen, config.source or "onitu.yaml")
        return 2
    token = ensure_token(config.data)
    space = connect_patiently(os.environ.get("ONITU_SPACE"), config, session_ttl=5.0)
    try:
        asyncio.run(serve(Context(config, space, token)))
    finally:
        space.close()
    return 0
