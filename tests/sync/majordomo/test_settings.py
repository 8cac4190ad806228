"""The ``majordomo:`` section and the modes an agent's services get."""

from __future__ import annotations

from pathlib import Path

from onitu.config import loads
from onitu.sync.majordomo.agent import hello_services
from onitu.sync.majordomo.registry import folder_config, record, service_mode
from onitu.sync.settings import ServiceFolderConfig
from tests.configs import assert_refused


def test_majordomo_runs_when_it_listens(tmp_path: Path) -> None:
    text = "majordomo:\n  listen: tcp://0.0.0.0:7652\n  clients:\n    laptop: {folders: [docs], mode: r}\n"
    config = loads(text, "onitu.yaml", tmp_path / "onitu.yaml")
    names = [a.name for a in config.all_agents()]
    assert "majordomo" in names and "referee" in names  # agents' services need a referee, even with none here
    assert config.majordomo.clients["laptop"].mode == "r"
    assert "majordomo" not in [a.name for a in loads("", "onitu.yaml", tmp_path / "onitu.yaml").all_agents()]


def test_bad_sections_name_the_key(tmp_path: Path) -> None:
    assert_refused(tmp_path, "majordomo:\n  listen: ipc:///tmp/x\n", 2, "majordomo.listen", "must be a tcp://")
    assert_refused(tmp_path, "majordomo:\n  clients:\n    laptop: {mode: x}\n", 3, "majordomo.clients.laptop.mode",
                   "'r', 'w' or 'rw'")


def test_service_mode_is_the_grant_within_the_folder() -> None:
    assert service_mode("r", "rw") == "w"  # the agent receives: the hub writes to it, its changes are not read
    assert service_mode("w", "rw") == "r"
    assert service_mode("rw", "rw") == "rw"
    assert service_mode("rw", "r") == "r"
    assert service_mode("r", "r") is None  # nothing may flow
    # and within the mode agent.yaml asks for its service (said as in onitu.yaml: r, the service's changes are read)
    assert service_mode("rw", "rw", "r") == "r" and service_mode("rw", "rw", "w") == "w"
    assert service_mode("r", "rw", "r") is None  # a receiving key and a service that only sends


def test_agent_yaml_folder_options_go_in_the_hello(tmp_path: Path) -> None:
    """The folder's options, then the service's over them, with the path; what is not given is not sent."""
    text = ("folders:\n  docs: {blacklist: ['*.tmp'], mode: r}\n  music:\nservices:\n  laptop-files:\n"
            "    driver: local\n    options: {root: /srv}\n    folders:\n"
            "      docs: {path: Documents, mode: rw, file_size: {max: 1 MB}}\n      music: Music\n")
    config = loads(text, "agent.yaml", tmp_path / "agent.yaml")
    assert hello_services(config) == {"laptop-files": {
        "docs": {"blacklist": ["*.tmp"], "mode": "rw", "file_size": {"max": 1_000_000}, "path": "Documents"},
        "music": {"path": "Music"}}}
    docs = ServiceFolderConfig.model_validate(hello_services(config)["laptop-files"]["docs"])
    body = record("laptop", {"docs": docs})
    assert folder_config(body["folders"]["docs"]).blacklist == ["*.tmp"]  # what the referee applies on the hub


def test_changed_grants_restart_the_majordomo(tmp_path: Path) -> None:
    from onitu.supervision.reload import changes

    base = ("folders: {docs: {}}\nmajordomo:\n  listen: tcp://127.0.0.1:7652\n"
            "  clients:\n    laptop: {folders: [docs]}\n")
    old = loads(base, "onitu.yaml", tmp_path / "onitu.yaml")
    new = loads(base.replace("folders: [docs]}", "folders: [docs], mode: r}"), "onitu.yaml", tmp_path / "onitu.yaml")
    found = changes(old, new)
    assert "majordomo" in found.stop and "majordomo" in [s.name for s in found.start]
    assert "majordomo" not in changes(old, old).stop
