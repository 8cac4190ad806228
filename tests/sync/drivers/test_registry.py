"""The driver registry: lazy imports, option schemas, secrets from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from onitu.config import load
from onitu.sync.drivers import OPTIONS, OptionError, driver_for, open_driver, options_for, parse_options
from onitu.sync.drivers.options import reveal
from tests.configs import write

REMOTE = """\
folders:
  docs:
services:
  laptop:
    driver: local
    options: {root: /home/me/onitu}
    folders: {docs: }
  bucket:
    driver: s3
    options:
      bucket: my-bucket
      endpoint_url: "http://127.0.0.1:9000"
      key: "${ONITU_TEST_KEY}"
      secret: "${ONITU_TEST_SECRET}"
      root: team/docs
    folders: {docs: }
  box:
    driver: sftp
    options: {host: example.org, username: me, key_file: ~/.ssh/id_ed25519, root: /srv/onitu, poll: 30}
    folders: {docs: }
  ftp:
    driver: ftp
    options: {host: ftp.example.org, username: me, password: "${FTP_PASSWORD}", tls: true}
    folders: {docs: }
  dav:
    driver: webdav
    options: {url: "https://dav.example.org/remote.php/dav/files/me/onitu", username: me, password: x}
    folders: {docs: }
"""

LOCAL_ONLY = """\
folders:
  docs:
services:
  laptop:
    driver: local
    options: {root: /home/me/onitu}
    folders: {docs: }
"""


def test_validating_a_config_imports_no_client_library(tmp_path: Path) -> None:
    """Checking a config (even one naming every remote driver) needs the option schemas only."""
    for name, text in (("local", LOCAL_ONLY), ("remote", REMOTE)):
        (tmp_path / name).mkdir()
        path = write(tmp_path / name, text)
        code = (f"import sys; from onitu.config import load; load({str(path)!r}); print(sorted(m for m in "
                "('s3fs', 'aiobotocore', 'asyncssh', 'webdav4', 'ftplib') if m in sys.modules))")
        found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert found.strip() == "[]", found


def test_opening_a_driver_imports_its_module_only_then() -> None:
    code = ("import sys; from onitu.sync.drivers import open_driver; "
            "open_driver('s', 'ftp', {'host': '127.0.0.1'}); "
            "print('ftplib' in sys.modules, 's3fs' in sys.modules, 'asyncssh' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.split() == ["True", "False", "False"]


def test_every_driver_is_registered_local_first() -> None:
    assert list(OPTIONS) == ["local", "s3", "sftp", "ftp", "webdav"]
    for name in OPTIONS:
        assert driver_for(name).name == name and driver_for(name).Options is options_for(name)
    with pytest.raises(ValueError, match=r"unknown driver .dropbox..*known: ftp, local, s3, sftp, webdav"):
        driver_for("dropbox")


def test_options_are_checked_by_name(tmp_path: Path) -> None:
    config = load(write(tmp_path, REMOTE))
    assert config.services["box"].driver == "sftp"
    with pytest.raises(OptionError, match="bucket: missing required option"):
        parse_options("s3", {"endpoint_url": "http://x"})
    # a misspelt required option: the misspelling is named, not the option it leaves missing
    with pytest.raises(OptionError, match=r"^option buckett: unknown option \(expected one of: .*bucket"):
        parse_options("s3", {"buckett": "x"})
    with pytest.raises(OptionError, match=r"unknown option.*expected one of: poll, settle, host"):
        parse_options("ftp", {"host": "h", "passwd": "p"})
    with pytest.raises(OptionError, match="url"):
        parse_options("webdav", {"url": "ftp://not-http"})


def test_secrets_come_from_the_environment_and_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    options = parse_options("s3", {"bucket": "abc", "key": "${ONITU_TEST_KEY}",
                                   "secret": "s3cr3t-${ONITU_TEST_SECRET}"})
    assert "s3cr3t" not in repr(options) and "s3cr3t" not in str(options)
    monkeypatch.setenv("ONITU_TEST_KEY", "AKIA-test")
    monkeypatch.setenv("ONITU_TEST_SECRET", "tail")
    assert reveal(options.key, "key") == "AKIA-test" and reveal(options.secret, "secret") == "s3cr3t-tail"
    monkeypatch.delenv("ONITU_TEST_SECRET")
    with pytest.raises(ValueError, match="option secret: environment variable ONITU_TEST_SECRET is not set"):
        reveal(options.secret, "secret")
    assert reveal(SecretStr("plain $HOME"), "password") == "plain $HOME"  # only ${NAME} is replaced


def test_a_missing_secret_makes_the_service_unavailable_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FTP_PASSWORD", raising=False)
    driver = open_driver("ftp", "ftp", {"host": "127.0.0.1", "port": 1, "password": "${FTP_PASSWORD}"})
    status = driver.available()
    assert not status and "environment variable FTP_PASSWORD is not set" in status.reason
