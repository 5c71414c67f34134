"""The CA a lock trusts for its key server's ``wss://`` URL: a key server behind a
private CA (a closed network, an in-house PKI) names it once, in ``sync.ca_file``;
every bundle carries it, and the lock trusts that CA for the sync and nothing else.
Bad files are refused when the config is read, naming the setting."""

from __future__ import annotations

import json
import re
import ssl
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from elock_common import LockSecret
from elock_common.pki_profile import make_ca
from key_provisioner.core.config import load_settings
from key_provisioner.core.crypto import MasterKey
from key_provisioner.core.errors import ConfigError
from lock_server.cli import main as lock_cli
from lock_server.config import load_config
from lock_server.errors import LockConfigError

LOCK_ID = str(uuid.UUID(int=7))


def _ca_pem(name: str = "Private CA") -> str:
    cert, _key = make_ca(name, now=time.time())
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _lock_config(directory: Path, sync: str) -> Path:
    path = directory / "lock.toml"
    path.write_text(f'[lock]\nname = "d"\n[sync]\nlock_id = "{LOCK_ID}"\n{sync}')
    return path


def test_the_lock_trusts_the_named_ca_and_only_it(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(_ca_pem())
    config = load_config(_lock_config(tmp_path, 'url = "wss://k/s"\nca_file = "ca.pem"\n'))
    assert config.sync is not None and config.sync.ca_file == tmp_path / "ca.pem"
    context = config.sync.tls_context()
    assert context is not None and context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    (subject,) = [c["subject"] for c in context.get_ca_certs()]  # not the system's store
    assert ((("commonName", "Private CA"),),) == subject[-1:]
    plain = load_config(_lock_config(tmp_path, 'url = "wss://k/s"\n'))
    assert plain.sync is not None and plain.sync.tls_context() is None  # the system's store


@pytest.mark.parametrize(
    ("sync", "file_text", "message"),
    [
        ('url = "ws://k/s"\nca_file = "ca.pem"\n', None, "sync.ca_file needs a wss:// sync.url"),
        ('url = "wss://k/s"\nca_file = "gone.pem"\n', None, "cannot read sync.ca_file"),
        ('url = "wss://k/s"\nca_file = "ca.pem"\n', "not a certificate\n", "holds no PEM"),
        ('url = "wss://k/s"\nca_file = 3\n', None, "sync.ca_file has the wrong type"),
    ],
)
def test_a_bad_ca_file_is_refused_when_the_config_is_read(
    tmp_path: Path, sync: str, file_text: str | None, message: str
) -> None:
    if file_text is not None:
        (tmp_path / "ca.pem").write_text(file_text)
    with pytest.raises(LockConfigError, match=re.escape(message)):
        load_config(_lock_config(tmp_path, sync))


def _keyserver(tmp_path: Path, sync: str) -> Path:
    path = tmp_path / "keyserver.toml"
    path.write_text(f"[worker]\nenabled = false\n[sync]\n{sync}")
    return path


def test_the_key_server_puts_its_ca_in_every_bundle_and_the_lock_installs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = _ca_pem("Keys CA")
    (tmp_path / "sync-ca.pem").write_text(pem)
    env = {"ELOCK_MASTER_KEY": MasterKey.generate().to_text()}
    sync = 'url = "wss://keys.example.org/sync/lock"\nca_file = "sync-ca.pem"\n'
    settings = load_settings(_keyserver(tmp_path, sync), env=env)
    assert settings.sync.ca_pem == pem and "BEGIN" not in repr(settings)

    bundle = {
        "format": "elock-lock-bundle/1",
        "lock_id": LOCK_ID,
        "name": "front door",
        "secret": LockSecret.generate().to_text(),
        "host": "127.0.0.1",
        "port": 5684,
        "sync_url": settings.sync.url,
        "sync_ca": settings.sync.ca_pem,
    }
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    lock_dir = tmp_path / "lock"
    assert (
        lock_cli(["init", "--dir", str(lock_dir), "--bundle", str(tmp_path / "bundle.json")]) == 0
    )
    config = load_config(lock_dir / "lock.toml")
    assert config.sync is not None and config.sync.ca_file == lock_dir / "sync-ca.pem"
    assert (lock_dir / "sync-ca.pem").read_text() == pem

    bundle["sync_ca"] = "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    args = ["init", "--force", "--dir", str(lock_dir), "--bundle", str(tmp_path / "bundle.json")]
    assert lock_cli(args) == 2
    assert "holds no PEM certificate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("sync", "file_text", "message"),
    [
        ('url = "ws://k/sync/lock"\nca_file = "ca.pem"\n', "", "needs a wss:// sync.url"),
        ('ca_file = "ca.pem"\n', "", "needs a wss:// sync.url"),
        ('url = "wss://k/sync/lock"\nca_file = "gone.pem"\n', None, "cannot read"),
        ('url = "wss://k/sync/lock"\nca_file = "ca.pem"\n', "junk\n", "is not PEM certificates"),
        ('url = "wss://k/sync/lock"\nca_file = "ca.pem"\n', "A" * 70_000, "at most 65536 bytes"),
    ],
)
def test_the_key_server_refuses_a_bad_ca_file(
    tmp_path: Path, sync: str, file_text: str | None, message: str
) -> None:
    if file_text is not None:
        (tmp_path / "ca.pem").write_text(file_text)
    env = {"ELOCK_MASTER_KEY": MasterKey.generate().to_text()}
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(_keyserver(tmp_path, sync), env=env)
