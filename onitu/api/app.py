"""The REST API: every route of ``/api``, the page at ``/`` and ``/metrics``, on the hub client's queries.

Reads are the hub client's (:mod:`onitu.sync.hub`), commands go to the referee through it, and folder and service
edits rewrite ``onitu.yaml`` (:mod:`onitu.config_file`), which the running Onitu applies. Every ``/api`` route and
``/metrics`` need the token (:mod:`onitu.api.auth`). Hub errors map to HTTP: not running 503, no answer 504,
refused 409; an edit the config refuses is 422 with the config's own message.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from onitu import config_file
from onitu.api import events, metrics
from onitu.api.auth import Bearer
from onitu.api.context import Context
from onitu.config import ConfigError
from onitu.make.overview import builds
from onitu.sync import hub
from onitu.sync.drivers import OPTIONS

STATIC = resources.files("onitu.api") / "static"
HIDDEN = ("password", "secret", "token", "passphrase", "private")  # option names whose values are never shown
MASK = "********"  # what is shown instead

# The page and its scripts come from here only; nothing may frame it.
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resolve(Body):
    """Which conflicts to settle (exact ``paths``, or ``patterns`` as globs) and what to keep."""

    keep: Literal["current", "conflict", "both"]
    paths: list[str] = Field(default_factory=list, max_length=10_000)
    patterns: list[str] = Field(default_factory=list, max_length=100)
    folder: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Resolve:
        if not self.paths and not self.patterns:
            raise ValueError("give the conflicts to resolve: paths (exact) or patterns (globs)")
        return self


class Release(Body):
    """Which held deletions to approve or reject (all when neither is given)."""

    folder: str | None = None
    service: str | None = None


class Folder(Body):
    name: str = Field(min_length=1, max_length=255)
    options: dict[str, Any] = Field(default_factory=dict)


class FolderChange(Body):
    options: dict[str, Any] = Field(default_factory=dict)


class Service(Body):
    name: str = Field(min_length=1, max_length=255)
    driver: str
    options: dict[str, Any] = Field(default_factory=dict)
    folders: dict[str, Any] = Field(default_factory=dict)  # folder -> path in the service, or its settings


class ServiceChange(Body):
    driver: str
    options: dict[str, Any] = Field(default_factory=dict)
    folders: dict[str, Any] = Field(default_factory=dict)


def _masked(options: dict[str, Any]) -> dict[str, Any]:
    return {k: MASK if any(word in k.lower() for word in HIDDEN) else v for k, v in options.items()}


def create_app(ctx: Context, hub_events: events.Events) -> FastAPI:
    """The whole application."""
    app = FastAPI(title="Onitu", summary="The Onitu hub: status, folders, services, files, conflicts, held "
                  "deletions, plan, transfers, make builds, live events.", version="1")
    auth = [Depends(Bearer(ctx.token))]
    api = APIRouter(prefix="/api", dependencies=auth)

    @app.exception_handler(hub.HubError)
    def _hub_error(request: Request, exc: hub.HubError) -> JSONResponse:
        code = 503 if isinstance(exc, hub.NotRunning) else 504 if isinstance(exc, hub.NoAnswer) else 409
        return JSONResponse({"detail": str(exc)}, code)

    @app.exception_handler(ConfigError)
    def _config_error(request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "key": exc.key, "line": exc.line, "problem": exc.problem}, 422)

    @app.exception_handler(config_file.EditError)
    def _edit_error(request: Request, exc: config_file.EditError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 409)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    # -- reads ---------------------------------------------------------------------------------------------------

    @api.get("/status")
    def status() -> dict[str, Any]:
        """Processes (role, state, restarts), the space pair (mode, epoch), every folder x service."""
        return hub.overview(ctx.config, ctx.space)

    @api.get("/folders")
    def folders() -> dict[str, Any]:
        """Every folder: its options and the services replicating it (with the path in each)."""
        config = ctx.config
        return {name: {"options": options.model_dump(exclude_defaults=True),
                       "services": {s: svc.folders[name].path for s, svc in config.services.items()
                                    if name in svc.folders}}
                for name, options in config.folders.items()}

    @api.get("/services")
    def services() -> dict[str, Any]:
        """Every service: driver, options (secrets hidden), folders."""
        return {name: {"driver": svc.driver, "options": _masked(svc.options),
                       "folders": {f: sf.model_dump(exclude_defaults=True) for f, sf in svc.folders.items()}}
                for name, svc in ctx.config.services.items()}

    @api.get("/drivers")
    def drivers() -> dict[str, Any]:
        """Every driver's options, as JSON schema (the page builds its forms from them)."""
        return {name: schema.model_json_schema() for name, schema in OPTIONS.items()}  # local first: the default

    @api.get("/folders/{folder}/files")
    def files(folder: str, dir: Annotated[str, Query(max_length=4096)] = "",
              limit: Annotated[int, Query(ge=1, le=100_000)] = 5000) -> list[dict[str, Any]]:
        """The agreed entries directly in ``dir``: size, sha256, version, which services hold it."""
        if folder not in ctx.config.folders:
            raise HTTPException(404, f"no folder {folder!r}")
        return hub.files(ctx.space, folder, dir, limit)

    @api.get("/conflicts")
    def conflicts() -> list[dict[str, Any]]:
        """Every conflict copy: folder, path, the copy, the service whose version lost, when."""
        return hub.conflicts(ctx.space)

    @api.get("/held")
    def held() -> list[dict[str, Any]]:
        """Deletions held for approval, per folder and service."""
        return hub.held(ctx.space)

    @api.get("/plan")
    def plan() -> dict[str, Any]:
        """What the rules and replicas would copy, move or delete now (changes nothing; lists every replica)."""
        preview = hub.plan(ctx.config, ctx.space)
        return {"folders": {f: hub.plan_data(p) for f, p in preview.plans.items()},
                "unavailable": preview.unavailable}

    @api.get("/transfers")
    def transfers() -> dict[str, Any]:
        """Transfers under way: service -> path -> bytes done and size."""
        return hub.transfers(ctx.space)

    @api.get("/make")
    def make() -> dict[str, Any]:
        """Make builds on the space (targets done, running, waiting) and the workers with their slots."""
        return builds(ctx.space)

    @api.get("/space")
    def space() -> dict[str, Any]:
        """The space's counters: tuples, sessions, requests, malformed frames."""
        return ctx.space.stats()

    # -- commands ------------------------------------------------------------------------------------------------

    @api.post("/conflicts/resolve")
    def resolve(body: Resolve) -> list[dict[str, Any]]:
        """Settle many conflicts in one request."""
        patterns = [hub.exactly(p) for p in body.paths] + body.patterns
        return hub.resolve(ctx.space, patterns, body.keep, body.folder)

    @api.post("/held/approve")
    def approve(body: Release) -> list[dict[str, Any]]:
        """Carry out held deletions."""
        return hub.approve(ctx.space, body.folder, body.service)

    @api.post("/held/reject")
    def reject(body: Release) -> list[dict[str, Any]]:
        """Undo held deletions: the files are copied back."""
        return hub.reject(ctx.space, body.folder, body.service)

    # -- config edits --------------------------------------------------------------------------------------------

    @api.post("/folders", status_code=201)
    def add_folder(body: Folder) -> dict[str, str]:
        ctx.adopt(config_file.set_folder(ctx.path, body.name, body.options, new=True))
        return {"folder": body.name}

    @api.put("/folders/{name}")
    def change_folder(name: str, body: FolderChange) -> dict[str, str]:
        ctx.adopt(config_file.set_folder(ctx.path, name, body.options, new=False))
        return {"folder": name}

    @api.delete("/folders/{name}")
    def remove_folder(name: str) -> dict[str, str]:
        ctx.adopt(config_file.remove_folder(ctx.path, name))
        return {"folder": name}

    @api.post("/services", status_code=201)
    def add_service(body: Service) -> dict[str, str]:
        ctx.adopt(config_file.set_service(ctx.path, body.name, body.driver, body.options, body.folders, new=True))
        return {"service": body.name}

    @api.put("/services/{name}")
    def change_service(name: str, body: ServiceChange) -> dict[str, str]:
        current = ctx.config.services.get(name)
        options = {k: current.options[k] if v == MASK and current and k in current.options else v
                   for k, v in body.options.items()}  # a secret shown masked and sent back unchanged
        ctx.adopt(config_file.set_service(ctx.path, name, body.driver, options, body.folders, new=False))
        return {"service": name}

    @api.delete("/services/{name}")
    def remove_service(name: str) -> dict[str, str]:
        ctx.adopt(config_file.remove_service(ctx.path, name))
        return {"service": name}

    api.add_api_route("/events", hub_events.route, methods=["GET"], response_class=events.EventSourceResponse,
                      summary="Live events (server-sent events; Last-Event-ID resumes)")
    app.include_router(api)
    app.add_api_route("/metrics", metrics.route(ctx), methods=["GET"], dependencies=auth,
                      response_class=Response, include_in_schema=False)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in {"app.js", "style.css"}:
            raise HTTPException(404)
        return FileResponse(str(STATIC / name))

    return app
