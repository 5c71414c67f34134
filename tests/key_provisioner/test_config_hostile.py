"""keyserver.toml and ``ELOCK_KEYSERVER_*``: every bad value is a ``ConfigError`` that
names it, never another exception, and never echoes a database password."""

from __future__ import annotations

from pathlib import Path

import pytest

from key_provisioner.cli import main
from key_provisioner.core.config import load_settings
from key_provisioner.core.crypto import MasterKey
from key_provisioner.core.errors import ConfigError

KEY = MasterKey.generate().to_text()
PUSH = "".join(
    f'{name} = "{value}"\n'
    for name, value in [("racs_client_cert", "a\\u0000b"), ("racs_client_key", "ks.toml"),
                        ("racs_ca", "ks.toml"), ("tls2_cert", "ks.toml"),
                        ("tls2_key", "ks.toml"), ("se_issuer_ca", "ks.toml")]
)  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[keyserver]\nport = " + "9" * 5000 + "\n", {}, "too large"),
        ("[worker]\npoll_seconds = " + "9" * 400 + "\n", {}, "worker.poll_seconds is out of"),
        ('[sync]\nurl = "wss://[abc/sync/lock"\n', {}, "is not a URL"),
        ("", {"ELOCK_KEYSERVER_SYNC_URL": "wss://[abc/sync/lock"}, "is not a URL"),
        ("", {"ELOCK_KEYSERVER_SYNC_URL": "wss://k:99999/sync/lock"}, "is not a URL"),
        ("", {"ELOCK_KEYSERVER_SYNC_URL": "wss://k:x/sync/lock"}, "is not a URL"),
        (
            '[sync]\nurl = "wss://keys.example.org/sync/lock"\nca_file = "a\\u0000b"\n',
            {},
            "sync.ca_file must not contain a NUL",
        ),
        ('[keyserver]\nmaster_key_file = "a\\u0000b"\n', {"ELOCK_MASTER_KEY": ""}, "NUL"),
        ("[push]\n" + PUSH, {}, "push.racs_client_cert must not contain a NUL"),
        (
            '[keyserver]\ndatabase_url = "postgresql+psycopg://u:pw@db:notaport/elock"\n',
            {},
            "not a database URL",
        ),
        ('[keyserver]\ndatabase_url = "sqlite:////tmp/a\\u0000b"\n', {}, "NUL"),
    ],
)
def test_hostile_settings_are_config_errors(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "ks.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, env={"ELOCK_MASTER_KEY": KEY, **env})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg:/elock:s3cretPW@db/elock",
        "postgresql+psycopg://elock:s3cretPW@db:port/elock",
        "mysql://elock:s3cretPW@db/elock",
    ],
)
def test_a_bad_database_url_does_not_print_its_password(url: str) -> None:
    env = {"ELOCK_MASTER_KEY": KEY, "ELOCK_KEYSERVER_DATABASE_URL": url}
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert "s3cretPW" not in str(caught.value)


def test_the_cli_says_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ks.toml"
    config.write_text('[sync]\nurl = "wss://[abc/sync/lock"\n')
    monkeypatch.setenv("ELOCK_MASTER_KEY", KEY)
    assert main(["--config", str(config), "migrate"]) == 2
    err = capsys.readouterr().err
    assert "is not a URL" in err and err.count("\n") == 1
