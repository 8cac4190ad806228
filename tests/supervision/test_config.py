"""onitu.config: loading onitu.yaml, and error messages that name the file, the line and the key."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from onitu import paths
from onitu.config import AgentConfig, Config, ConfigError, default_path, load
from tests.configs import assert_refused, write

FULL = """\
data: /srv/onitu
heartbeat:
  interval: 0.25
  misses: 5
  startup: 20
restart:
  backoff: 1
  max_backoff: 60
  fast_crash: 5.5
  max_fast_crashes: 2
space:
  listen: [tcp://0.0.0.0:7000, ipc:///tmp/onitu.sock]
  insecure_loopback: true
  sync: full
  session_ttl: 2
agents:
  - name: sync.hub
    command: [onitu, hub, --verbose]
    heartbeat: true
    env: {LOG: debug, PORT: 8080}
    cwd: /srv
  - name: make_1
    command: make -j 4 "all targets"
workers:
  count: 2
  args: [--jobs, 4]
"""


def test_default_needs_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONITU_API_LISTEN")  # the suite's own default: no API
    config = load(None)
    assert config == Config()
    assert config.source is None
    assert config.data == paths.data_dir().expanduser()
    assert config.heartbeat.interval == 0.5 and config.heartbeat.misses == 3 and config.heartbeat.startup == 10.0
    assert config.restart.backoff == 0.5 and config.restart.max_backoff == 30.0
    assert config.restart.fast_crash == 10.0 and config.restart.max_fast_crashes == 5
    assert config.space.listen == [] and not config.space.insecure_loopback
    assert config.space.sync == "normal" and config.space.session_ttl == 5.0
    assert config.agents == [] and config.workers.count == 0
    assert [a.name for a in config.all_agents()] == ["api"] and config.api.listen == "127.0.0.1:7651"


@pytest.mark.parametrize("text", ["", "# nothing configured yet\n\n", "heartbeat:\nagents:\n"])
def test_empty_file_or_empty_sections_give_the_defaults(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    config = load(path)
    assert config.source == path.absolute()
    assert config.model_dump(exclude={"source"}) == Config().model_dump(exclude={"source"})


def test_full_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load(path)
    assert config.source == path.absolute()
    assert config.data == Path("/srv/onitu")
    assert (config.heartbeat.interval, config.heartbeat.misses, config.heartbeat.startup) == (0.25, 5, 20.0)
    assert config.restart.model_dump() == {"backoff": 1, "max_backoff": 60, "fast_crash": 5.5, "max_fast_crashes": 2}
    assert config.space.listen == ["tcp://0.0.0.0:7000", "ipc:///tmp/onitu.sock"]
    assert config.space.insecure_loopback is True and config.space.sync == "full" and config.space.session_ttl == 2
    hub, make = config.agents
    assert hub == AgentConfig(
        name="sync.hub", command=["onitu", "hub", "--verbose"], heartbeat=True, env={"LOG": "debug", "PORT": "8080"},
        cwd="/srv",
    )
    assert make.name == "make_1" and make.heartbeat is False and make.env == {} and make.cwd is None
    assert config.workers.count == 2 and config.workers.args == ["--jobs", "4"]


def test_string_command_is_split_like_a_shell(tmp_path: Path) -> None:
    command = """rsync -a --exclude '*.tmp' "my dir/" host:backup"""
    config = load(write(tmp_path, f"agents:\n  - name: backup\n    command: {command}\n"))  # a plain YAML scalar
    assert config.agents[0].command == ["rsync", "-a", "--exclude", "*.tmp", "my dir/", "host:backup"]
    assert config.agents[0].command == shlex.split(command)


def test_relative_data_is_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "etc", "data: state/onitu\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load(Path("../etc/onitu.yaml")).data == tmp_path / "elsewhere" / ".." / "etc" / "state" / "onitu"
    assert load(tmp_path / "etc" / "onitu.yaml").data == tmp_path / "etc" / "state" / "onitu"


def test_home_in_data_is_expanded(tmp_path: Path) -> None:
    assert load(write(tmp_path, "data: ~/onitu-data\n")).data == Path.home() / "onitu-data"


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONITU_DATA", str(tmp_path / "data"))
    assert default_path() is None
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "onitu.yaml").write_text("# made by the first `onitu start`\n")
    assert default_path() == tmp_path / "data" / "onitu.yaml"  # the data directory's, made by a first start
    write(tmp_path, "workers:\n  count: 1\n")
    assert default_path() == Path("onitu.yaml")
    assert load(default_path()).workers.count == 1


def test_all_agents_appends_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONITU_API_LISTEN", "127.0.0.1:7651")
    config = load(write(tmp_path, FULL))
    agents = config.all_agents()
    assert [a.name for a in agents] == ["sync.hub", "make_1", "worker-1", "worker-2", "api"]
    assert agents[:2] == config.agents
    for worker in agents[2:4]:
        assert worker.command == [sys.executable, "-m", "onitu.entry", "worker", "--jobs", "4"]
        assert worker.heartbeat is False and worker.env == {} and worker.cwd is None
    assert load(write(tmp_path, "workers: {count: 3}\n")).all_agents()[2].command[-1] == "worker"


BAD = {
    "unknown top-level key": (
        "heartbeat:\n  interval: 1\nheartbeet:\n  interval: 2\n",
        3, "heartbeet",
        "unknown setting (expected one of: data, heartbeat, restart, space, agents, workers, folders, services, sync, "
        "majordomo, api)",
    ),
    "unknown nested key": (
        "heartbeat:\n  interval: 1\n  intervall: 2\n",
        3, "heartbeat.intervall", "unknown setting (expected one of: interval, misses, startup, busy, orphan)",
    ),
    "unknown key in an agent": (
        "agents:\n  - name: a\n    command: x\n    heartbeats: true\n",
        4, "agents[0].heartbeats", "unknown setting (expected one of: name, command, heartbeat, env, cwd)",
    ),
    "wrong type": ("restart:\n  backoff: soon\n", 2, "restart.backoff", "must be a valid number"),
    "negative interval": ("heartbeat:\n  interval: -1\n", 2, "heartbeat.interval", "greater than 0 (found -1)"),
    "zero misses": ("heartbeat: {misses: 0}\n", 1, "heartbeat.misses", "greater than or equal to 1"),
    "infinite startup": ("\n\nheartbeat:\n  startup: .inf\n", 4, "heartbeat.startup", "must be a finite number"),
    "orphan within a few heartbeats": (
        "heartbeat:\n  interval: 1\n  orphan: 5\n", 3, "heartbeat.orphan",
        "must be at least twice interval x misses (6 s): a slow watchdog is not a dead one",
    ),
    "max_backoff below backoff": (
        "restart:\n  backoff: 5\n  max_backoff: 1\n", 3, "restart.max_backoff", "must be at least restart.backoff (5)",
    ),
    "bad endpoint scheme": (
        "space:\n  listen:\n    - tcp://127.0.0.1:7000\n    - http://127.0.0.1:7001\n",
        4, "space.listen[1]", "must be an endpoint starting with 'ipc://' or 'tcp://'",
    ),
    "bad sync mode": ("space:\n  sync: fast\n", 2, "space.sync", "must be 'normal' or 'full' (found 'fast')"),
    "section is not a mapping": ("restart: 3\n", 1, "restart", "must be a mapping of settings (found 3)"),
    "agents is not a list": ("agents:\n  name: a\n", 1, "agents", "must be a valid list (found a mapping)"),
    "duplicate agent name": (
        "agents:\n  - name: a\n    command: x\n  - name: b\n    command: x\n  - name: a\n    command: y\n",
        6, "agents[2].name", "duplicate agent name 'a' (as agents[0])",
    ),
    "agent named like a worker": (
        "workers:\n  count: 2\nagents:\n  - name: worker-2\n    command: x\n",
        4, "agents[0].name",
        "'worker-2' is also the name of an agent Onitu starts (a worker, the referee, a plug or the API)",
    ),
    "reserved agent name": (
        "agents:\n  - name: watchdog\n    command: x\n", 2, "agents[0].name", "'watchdog' is reserved",
    ),
    "bad characters in a name": (
        "agents:\n  - name: my agent\n    command: x\n", 2, "agents[0].name", "only letters, digits",
    ),
    "missing name in an agent": (
        "agents:\n  - name: a\n    command: x\n  - command: y\n    heartbeat: true\n",
        4, "agents[1].name", "missing required setting",
    ),
    "empty command": (
        "agents:\n  - name: a\n    command: []\n",
        3, "agents[0].command", "must be a non-empty list of strings or a string (found an empty list)",
    ),
    "blank command string": (
        "agents:\n  - name: a\n    command: '  '\n", 3, "agents[0].command", "must be a non-empty list of strings",
    ),
    "unbalanced quote in command": (
        "agents:\n  - name: a\n    command: echo 'hi\n", 3, "agents[0].command", "No closing quotation",
    ),
    "command item is not a string": (
        "agents:\n  - name: a\n    command:\n      - ls\n      - {a: 1}\n",
        5, "agents[0].command[1]", "must be a valid string (found a mapping)",
    ),
    "env value is a list": (
        "agents:\n  - name: a\n    command: x\n    env:\n      PATH: [/bin]\n",
        5, "agents[0].env.PATH", "must be a valid string (found a list)",
    ),
    "negative worker count": ("workers:\n  count: -1\n", 2, "workers.count", "greater than or equal to 0"),
    "duplicate YAML key": (
        "heartbeat:\n  interval: 1\n  misses: 2\n  interval: 3\n",
        4, "heartbeat.interval", "duplicate key (first given on line 2)",
    ),
    "duplicate top-level YAML key": ("agents: []\nspace: {}\nagents: []\n", 3, "agents", "duplicate key"),
    "source is not a setting": ("source: elsewhere.yaml\n", 1, "source", "unknown setting"),
}


@pytest.mark.parametrize(("text", "line", "key", "problem"), BAD.values(), ids=BAD.keys())
def test_bad_file_names_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, problem: str) -> None:
    assert_refused(tmp_path, text, line, key, problem)


BAD_YAML = {
    "syntax error": ("heartbeat:\n  interval: 1\n misses: 2\n", 3, "invalid YAML: "),
    "unclosed flow sequence": ("space:\n  listen: [tcp://a:1\nagents: []\n", 3, "invalid YAML: "),
    "tab indentation": ("heartbeat:\n\tinterval: 1\n", 2, "invalid YAML: found character '\\t'"),
    "two documents": ("workers: {}\n---\nworkers: {}\n", 2, "invalid YAML: expected a single document"),
    "unknown tag": ("\ndata: !secret x\n", 2, "invalid YAML: could not determine a constructor"),
    "top level is a list": ("- heartbeat\n- restart\n", 1, "the top level must be a mapping of settings"),
    "top level is a word": ("heartbeat\n", 1, "the top level must be a mapping of settings"),
}


@pytest.mark.parametrize(("text", "line", "problem"), BAD_YAML.values(), ids=BAD_YAML.keys())
def test_bad_yaml_names_file_and_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}:{line}: {problem}"), str(info.value)


def test_relative_path_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "\nheartbeat:\n  intervall: 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^onitu\.yaml:3: heartbeat\.intervall: unknown setting \(expected one of: "):
        load(Path("onitu.yaml"))


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "onitu.yaml"
    with pytest.raises(ConfigError, match=r": cannot read: No such file or directory$") as info:
        load(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"
    missing.write_bytes(b"data: \xff\n")
    with pytest.raises(ConfigError, match=r"cannot read: .*utf-8"):
        load(missing)


def test_first_error_in_file_order_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "space:\n  sync: fast\nheartbeat:\n  interval: -1\nrestart:\n  backoff: 0\n")
    with pytest.raises(ConfigError, match=r":2: space\.sync: "):
        load(path)


def test_yaml_oddities(tmp_path: Path) -> None:
    # Keys are taken as written: `on:`/`1:` are env names, not a boolean and a number. Anchors and aliases work.
    text = "agents:\n  - name: a\n    command: x\n    env: &env {on: 'yes', 1: one}\n  - name: b\n    command: y\n"
    config = load(write(tmp_path, text + "    env: *env\n"))
    assert config.agents[0].env == config.agents[1].env == {"on": "yes", "1": "one"}
    with pytest.raises(ConfigError, match=r"onitu\.yaml:1: agents\[0\]: an alias refers to a value containing it"):
        load(write(tmp_path, "agents: &a\n  - *a\n"))


def test_an_api_beyond_loopback_needs_tls(tmp_path: Path) -> None:
    assert load(write(tmp_path, "api: {listen: '127.0.0.1:8080'}\n")).api.url == "http://127.0.0.1:8080/"
    with pytest.raises(ConfigError, match=r"onitu\.yaml:1: api\.listen: listening beyond this machine needs TLS"):
        load(write(tmp_path, "api: {listen: '0.0.0.0:7651'}\n"))
    config = load(write(tmp_path, "api: {listen: '0.0.0.0:7651', tls: {cert: /c.pem, key: /k.pem}}\n"))
    assert config.api.url == "https://127.0.0.1:7651/"
    with pytest.raises(ConfigError, match=r"api\.listen: must be HOST:PORT"):
        load(write(tmp_path, "api: {listen: '7651'}\n"))
    assert load(write(tmp_path, "api: {listen: ''}\n")).api_agents() == []
