"""Onitu's one config file, ``onitu.yaml``: loading, validation and error messages that point at the mistake.

Every setting has a default, so no file (``load(None)``) or an empty file is a valid config. Errors are reported as
``FILE:LINE: KEY.PATH: problem``, the first one in file order only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from onitu import paths
from onitu.api.settings import ApiConfig
from onitu.schema import Located, Model, Name, plain_name, positive
from onitu.sync.majordomo.settings import MajordomoConfig
from onitu.sync.settings import FolderConfig, ServiceConfig, SyncConfig

RESERVED_NAMES = frozenset({"space-a", "space-b", "watchdog"})
FILE_NAME = "onitu.yaml"
_SECTIONS = ("heartbeat", "restart", "space", "agents", "workers", "folders", "services", "sync", "majordomo", "api")


class ConfigError(Exception):
    """A config file that cannot be used. ``str()`` is ``FILE[:LINE]: [KEY: ]PROBLEM``, ready to show the user."""

    def __init__(self, file: str, line: int | None, key: str, problem: str) -> None:
        self.file, self.line, self.key, self.problem = file, line, key, problem
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class HeartbeatConfig(Model):
    """How the watchdog checks that heartbeat-speaking agents are alive."""

    interval: float = positive(0.5)
    misses: int = Field(3, ge=1)
    startup: float = positive(10.0)  # grace before the first answer is due
    # A silent process whose main thread keeps running on a CPU is in one long C call that holds the GIL (a garbage
    # collection, a sort or a free of millions of objects: a referee restarting a million-file hub), not hung: it
    # is given this long (counted like the misses) before it is.
    busy: float = positive(15.0)
    # A supervised process that hears no ping this long stops itself: its watchdog died and no launcher is left
    # to start one that adopts it. Long enough for a new watchdog to be started and for a busy one to catch up.
    orphan: float = positive(30.0)

    @model_validator(mode="after")
    def _check_orphan(self) -> Self:
        if self.orphan < 2 * self.interval * self.misses:
            raise Located(("orphan",), f"must be at least twice interval x misses "
                                       f"({2 * self.interval * self.misses:g} s): a slow watchdog is not a dead one")
        return self


class RestartConfig(Model):
    """How crashed agents are restarted: exponential backoff, and giving up on an agent that keeps crashing fast."""

    backoff: float = positive(0.5)
    max_backoff: float = positive(30.0)
    fast_crash: float = positive(10.0)  # a crash within this many seconds of starting counts as fast
    max_fast_crashes: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.max_backoff < self.backoff:
            raise Located(("max_backoff",), f"must be at least restart.backoff ({self.backoff:g})")
        return self


def _endpoint(value: str) -> str:
    if not value.startswith(("ipc://", "tcp://")) or len(value) <= len("tcp://"):
        raise ValueError("must be an endpoint starting with 'ipc://' or 'tcp://'")
    return value


class SpaceConfig(Model):
    """The two tuple-space servers the watchdog runs."""

    listen: list[Annotated[str, AfterValidator(_endpoint)]] = []  # extra client endpoints
    insecure_loopback: bool = False
    sync: Literal["normal", "full"] = "normal"
    session_ttl: float = positive(5.0)
    discovery_port: int = Field(7647, ge=0, le=65535)  # UDP port answering "where is the space?"; 0: off


class AgentConfig(Model):
    """One supervised process. ``command`` may be given as a string in YAML; it is split like a shell would."""

    name: str
    command: list[str]
    heartbeat: bool = False  # True: the agent speaks Onitu's heartbeat protocol
    env: dict[str, str] = {}
    cwd: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        plain_name(name)
        if name in RESERVED_NAMES:
            raise ValueError(f"{name!r} is reserved (reserved names: {', '.join(sorted(RESERVED_NAMES))})")
        return name

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, command: Any) -> Any:
        if isinstance(command, str):
            try:
                command = shlex.split(command)
            except ValueError as exc:  # e.g. "No closing quotation"
                raise ValueError(f"cannot split into words: {exc}") from None
        if not isinstance(command, list) or not command:
            raise ValueError("must be a non-empty list of strings or a string")
        return command


class WorkersConfig(Model):
    """Identical ``onitu worker`` agents, named worker-1 .. worker-N."""

    count: int = Field(0, ge=0)
    args: list[str] = []


_UserPath = Annotated[Path, AfterValidator(Path.expanduser)]

class Config(Model):
    """The whole config. ``source`` is the file it came from (None for the embedded default)."""

    data: _UserPath = Field(default_factory=paths.data_dir, validate_default=True)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    restart: RestartConfig = Field(default_factory=RestartConfig)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    agents: list[AgentConfig] = []
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    folders: dict[Name, FolderConfig] = {}
    services: dict[Name, ServiceConfig] = {}
    sync: SyncConfig = Field(default_factory=SyncConfig)
    majordomo: MajordomoConfig = Field(default_factory=MajordomoConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    source: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_sections(cls, values: Any) -> Any:
        # `heartbeat:` with every setting commented out is null in YAML; the user means "the defaults".
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if v is not None or k not in _SECTIONS}
        return values

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: dict[str, int] = {}
        for i, agent in enumerate(self.all_agents()):
            first = seen.setdefault(agent.name, i)
            if first != i and i < len(self.agents):
                raise Located(("agents", i, "name"), f"duplicate agent name {agent.name!r} (as agents[{first}])")
            if first != i:  # a worker's generated name: the configured agent is the one to rename
                clash = (f"{agent.name!r} is also the name of an agent Onitu starts (a worker, the referee, a plug or "
                         "the API)")
                raise Located(("agents", first, "name"), clash)
        return self

    @model_validator(mode="after")
    def _known_folders(self) -> Self:
        for name, service in self.services.items():
            for folder in service.folders:
                if folder not in self.folders:
                    known = ", ".join(self.folders) or "none"
                    raise Located(("services", name, "folders", folder), f"unknown folder (declared: {known})")
        return self

    def all_agents(self) -> list[AgentConfig]:
        """The configured agents followed by ``workers.count`` worker agents named worker-1 .. worker-N."""
        command = [sys.executable, "-m", "onitu.entry", "worker", *self.workers.args]
        workers = [AgentConfig(name=f"worker-{n}", command=command) for n in range(1, self.workers.count + 1)]
        return [*self.agents, *workers, *self.sync_agents(), *self.majordomo_agents(), *self.api_agents()]

    def majordomo_agents(self) -> list[AgentConfig]:
        """The majordomo, the door of remote sync agents (none when ``majordomo.listen`` is empty)."""
        if not self.majordomo.listen:
            return []
        return [AgentConfig(name="majordomo", command=[sys.executable, "-m", "onitu.sync.majordomo",
                                                       *self._source_args()], heartbeat=True)]

    def api_agents(self) -> list[AgentConfig]:
        """The API process (none when ``api.listen`` is empty)."""
        if not self.api.listen:
            return []
        return [AgentConfig(name="api", command=[sys.executable, "-m", "onitu.api", *self._source_args()],
                            heartbeat=True)]

    def _source_args(self) -> list[str]:
        return ["--config", str(self.source.resolve())] if self.source else []

    def sync_agents(self) -> list[AgentConfig]:
        """The sync hub's processes: the referee and one plug per service (none without services or agents)."""
        if not self.services and not self.majordomo.listen:
            return []
        source = self._source_args()
        python = [sys.executable, "-m"]
        # The referee holds a table of every tracked path for long and works in bursts of short-lived objects:
        # with the C allocator (and few of its arenas), what a burst freed goes back to the system page by page
        # (onitu.heap.give_back), where Python's own allocator keeps any 1 MiB arena that one object still uses.
        referee = AgentConfig(name="referee", command=[*python, "onitu.sync.referee", *source], heartbeat=True,
                              env={"PYTHONMALLOC": "malloc", "MALLOC_ARENA_MAX": "2"})
        plugs = [AgentConfig(name=f"plug-{name}", command=[*python, "onitu.sync.plug", "--service", name, *source],
                             heartbeat=True) for name in self.services]
        return [referee, *plugs]


def default_path() -> Path | None:
    """``onitu.yaml`` in the current directory if it exists; else the config of the one Onitu running (as its
    launcher recorded it, see :func:`record_running`); else the data directory's (the one ``onitu start`` makes on
    a first run); else None (meaning: the embedded default)."""
    running = running_configs()
    for path in (Path("onitu.yaml"), *(running if len(running) == 1 else []), paths.data_dir() / FILE_NAME):
        if path.exists():
            return path
    return None


def record_running(config: Config, pid: int) -> Path | None:
    """Record that launcher ``pid`` runs ``config`` (so that commands find it without ``-c``); the record's path."""
    if config.source is None:
        return None
    record = paths.runtime_dir() / "running" / f"{pid}.json"
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"pid": pid, "config": str(config.source), "data": str(config.data)}))
    except OSError:
        return None  # no runtime directory: commands then need -c
    return record


def running_configs() -> list[Path]:
    """The config files of the launchers running now, as recorded."""
    found = []
    for record in sorted((paths.runtime_dir() / "running").glob("*.json")):
        try:
            info = json.loads(record.read_text())
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # gone (or unreadable): not running
        found.append(Path(info["config"]))
    return found


def load(path: Path | None) -> Config:
    """Read and validate a config file; None gives the embedded default. Raises :class:`ConfigError`."""
    if path is None:
        return Config()
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, None, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return loads(text, file, Path(path).absolute())


def loads(text: str, file: str, source: Path) -> Config:
    """Validate the text of a config file (errors name ``file``); ``source`` is where it is (or will be)."""
    walker = _Walker(file)
    try:
        walker.loader = loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            raw = None if root is None else walker.value(root, ())
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark, problem = exc.problem_mark or exc.context_mark, exc.problem or exc.context
        if exc.context and exc.problem and problem.startswith("but "):
            problem = f"{exc.context}, {problem}"
        elif exc.context and exc.problem and exc.context_mark and mark and exc.context_mark.line != mark.line:
            # PyYAML notices the problem where parsing fails; the construct to fix often began earlier.
            problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise ConfigError(file, mark.line + 1 if mark else None, "", f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(file, line, "", f"invalid YAML: unacceptable character #x{exc.character:04x}") from None
    if raw is None:
        return Config(source=source)
    if not isinstance(raw, dict):
        raise ConfigError(file, walker.lines[()], "", "the top level must be a mapping of settings")
    if "source" in raw:
        raise ConfigError(file, walker.lines[("source",)], "source", _unknown(("source",)))
    if isinstance(raw.get("data"), str):
        # Relative to the file, not to wherever the watchdog happens to be started from.
        raw["data"] = source.parent / Path(raw["data"]).expanduser()
    try:
        return Config.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise walker.explain(exc) from None


class _Walker:
    """Turns the YAML node tree into plain data, remembering the line of every key path and rejecting duplicates."""

    def __init__(self, file: str) -> None:
        self.file, self.loader = file, None
        self.lines: dict[tuple[str | int, ...], int] = {}
        self.active: set[int] = set()

    def value(self, node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node)
        if id(node) in self.active:
            raise ConfigError(self.file, self.lines[path], _dotted(path), "an alias refers to a value containing it")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ConfigError(self.file, line, _dotted(path), "setting names must be plain text")
                # The key's text, not its YAML value: `on:` or `1:` are names here, not a boolean or a number.
                key, key_path = key_node.value, (*path, key_node.value)
                if key in result:
                    first = f"first given on line {self.lines[key_path]}"
                    raise ConfigError(self.file, line, _dotted(key_path), f"duplicate key ({first})")
                self.lines[key_path] = line
                result[key] = self.value(value_node, key_path)
            return result
        finally:
            self.active.discard(id(node))

    def explain(self, exc: ValidationError) -> ConfigError:
        """The pydantic error that comes first in the file, located and reworded for people editing YAML."""
        found = []
        for err in exc.errors():
            loc = tuple(part for part in err["loc"] if part != "[key]")
            cause = err.get("ctx", {}).get("error")
            loc += cause.loc if isinstance(cause, Located) else ()
            at = loc
            while at not in self.lines:  # a missing key: point at the mapping that lacks it
                at = at[:-1]
            found.append((self.lines[at], loc, _problem(err, loc, isinstance(cause, Located)), err["type"]))
        line, loc, problem, _ = min(_typos_first(found), key=lambda f: f[0])
        return ConfigError(self.file, line, _dotted(loc), problem)


def _typos_first(found: list[tuple[int, tuple, str, str]]) -> list[tuple[int, tuple, str, str]]:
    """``(line, loc, problem, kind)`` with a setting both missing and, in the same mapping, mistyped (``drivr:
    local``) told once: as the unknown name, on its own line, naming the setting it may stand for."""
    missing = {loc[:-1]: loc[-1] for _, loc, _, kind in found if kind == "missing"}
    typos = {loc[:-1] for _, loc, _, kind in found if kind == "extra_forbidden" and loc[:-1] in missing}
    kept = []
    for line, loc, problem, kind in found:
        if loc[:-1] in typos:
            if kind == "missing":
                continue
            if kind == "extra_forbidden":
                problem = f"{problem}; a typo of {missing[loc[:-1]]}?"
        kept.append((line, loc, problem, kind))
    return kept


# pydantic's wording for these talks about Python classes; people editing YAML think in mappings and paths.
_PLAIN = {"model_type": "must be a mapping of settings", "dict_type": "must be a mapping", "path_type": "must be text"}


def _problem(err: Any, loc: tuple[str | int, ...], located: bool) -> str:
    kind = err["type"]
    if kind == "missing":
        return "missing required setting"
    if kind == "extra_forbidden":
        return _unknown(loc)
    msg = _PLAIN.get(kind, err["msg"])
    msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    msg = re.sub(r"^(Input|String|List|Dictionary) should", "must", msg)
    return msg if located else f"{msg} (found {_show(err['input'])})"


def _unknown(loc: tuple[str | int, ...]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        model = model.model_fields[part].annotation if is_model else get_args(model)[-1]  # list[X], dict[K, X]
        while get_origin(model) is Annotated:
            model = get_args(model)[0]
    return f"unknown setting (expected one of: {', '.join(f for f in model.model_fields if f != 'source')})"


def _show(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        kind = {type(None): "nothing", dict: "mapping", list: "list"}[type(value)]
        return kind if value is None else f"a {kind}" if value else f"an empty {kind}"
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(path: tuple[str | int, ...]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text[1:] if text.startswith(".") else text
