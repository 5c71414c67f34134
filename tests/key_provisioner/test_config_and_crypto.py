"""Settings refuse to start without a master key and name every bad setting;
sealed lock secrets open only under the right key and for the right lock."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from elock_common import LockSecret
from key_provisioner.core.config import load_settings
from key_provisioner.core.crypto import MasterKey, SecretBox, hash_api_token, new_api_token
from key_provisioner.core.errors import ConfigError, SecretUnavailableError

KEY = MasterKey.generate().to_text()


def test_no_master_key_no_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no master key"):
        load_settings(env={})
    config = tmp_path / "ks.toml"
    config.write_text('[keyserver]\ndatabase_url = "sqlite:///ks.sqlite3"\n')
    with pytest.raises(ConfigError, match="no master key"):
        load_settings(config, env={})


@pytest.mark.parametrize("bad", ["", "short", "A" * 42, "!" * 43, "A" * 44 + "=="])
def test_malformed_master_keys_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="ELOCK_MASTER_KEY"):
        load_settings(env={"ELOCK_MASTER_KEY": bad or " "})


def test_master_key_from_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "master.key").write_text(KEY + "\n")
    config = tmp_path / "ks.toml"
    config.write_text(
        '[keyserver]\nmaster_key_file = "master.key"\ndatabase_url = "sqlite:///db/ks.sqlite3"\n'
        "port = 9000\n[worker]\nretry_base = 1\nretry_max = 60\nenabled = false\n"
    )
    settings = load_settings(config, env={})
    assert settings.master_key.to_text() == KEY
    assert settings.database_url == f"sqlite:///{tmp_path}/db/ks.sqlite3"
    assert settings.port == 9000 and settings.worker.retry_max == 60
    assert settings.worker.enabled is False
    assert KEY not in repr(settings)
    # The environment wins over the file.
    env = {
        "ELOCK_MASTER_KEY": MasterKey.generate().to_text(),
        "ELOCK_KEYSERVER_PORT": "9100",
        "ELOCK_KEYSERVER_WORKER_ENABLED": "true",
    }
    overridden = load_settings(config, env=env)
    assert overridden.master_key.to_text() == env["ELOCK_MASTER_KEY"]
    assert overridden.port == 9100 and overridden.worker.enabled is True


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[keyserver]\nport = true\n", {}, "keyserver.port has the wrong type"),
        ("[keyserver]\nport = 70000\n", {}, "keyserver.port must be between"),
        ("[keyserver]\ncolour = 1\n", {}, r"unknown key\(s\) in \[keyserver\]: colour"),
        ("[database]\n", {}, r"unknown section\(s\) database"),
        ("[worker]\nretry_base = 10\nretry_max = 5\n", {}, "retry_max must not be below"),
        ("[worker]\nbatch = 0\n", {}, "worker.batch must be between"),
        ("not toml [", {}, "not valid TOML"),
        ("", {"ELOCK_KEYSERVER_PORT": "eighty"}, "ELOCK_KEYSERVER_PORT must be a number"),
        ("", {"ELOCK_KEYSERVER_WORKER_ENABLED": "maybe"}, "must be true or false"),
        ("", {"ELOCK_KEYSERVER_DATABASE_URL": "mysql://x/y"}, "database_url must use one of"),
        ("", {"ELOCK_KEYSERVER_DATABASE_URL": "postgresql://x/y"}, r"use postgresql\+psycopg"),
        ("", {"ELOCK_KEYSERVER_DATABASE_URL": "sqlite://"}, "SQLite needs a file"),
        ("", {"ELOCK_KEYSERVER_DATABASE_URL": "::"}, "is not a database URL"),
        ("", {"ELOCK_MASTER_KEY_FILE": "/nonexistent/key"}, "cannot read master key file"),
    ],
)
def test_bad_settings_are_named(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "ks.toml"
    config.write_text(toml)
    env = {"ELOCK_MASTER_KEY": KEY, **env}
    if "ELOCK_MASTER_KEY_FILE" in env:
        del env["ELOCK_MASTER_KEY"]
    with pytest.raises(ConfigError, match=message):
        load_settings(config, env=env)


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "ks.toml"
    config.write_text("[keyserver]\nport = 8123\n")
    env = {"ELOCK_MASTER_KEY": KEY, "ELOCK_KEYSERVER_CONFIG": str(config)}
    assert load_settings(env=env).port == 8123
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(env={**env, "ELOCK_KEYSERVER_CONFIG": str(tmp_path / "missing.toml")})


def test_sealing_round_trip_and_binding() -> None:
    master = MasterKey.generate()
    box = SecretBox(master)
    secret, lock_id = LockSecret.generate(), uuid.uuid4()
    sealed = box.seal(secret, lock_id)
    assert box.open(sealed, lock_id) == secret
    assert secret.to_text().encode() not in sealed
    assert box.seal(secret, lock_id) != sealed  # fresh nonce every time
    with pytest.raises(SecretUnavailableError, match="another master key"):
        SecretBox(MasterKey.generate()).open(sealed, lock_id)
    with pytest.raises(SecretUnavailableError, match="damaged"):
        box.open(sealed, uuid.uuid4())  # copied onto another lock's row
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SecretUnavailableError, match="damaged"):
        box.open(bytes(tampered), lock_id)
    with pytest.raises(SecretUnavailableError):
        box.open(b"\x01", lock_id)
    assert "hidden" in repr(master) and master.to_text() not in repr(master)


def test_api_tokens_are_random_and_only_hashed() -> None:
    token, digest = new_api_token()
    other, _ = new_api_token()
    assert token != other and token.startswith("elk_") and len(token) > 40
    assert digest == hash_api_token(token) and len(digest) == 32
    assert token.encode() not in digest
