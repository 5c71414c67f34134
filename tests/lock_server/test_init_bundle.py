"""``elock-lock init --bundle``: a refused bundle changes nothing and never tracebacks,
and every bundle the key server makes is accepted (names in any script, a DNS host)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elock_common import LockSecret
from key_provisioner.schemas.locks import LockCreate
from lock_server.cli import main
from lock_server.config import load_config


def _bundle(tmp_path: Path, raw: str | None = None, **overrides: object) -> Path:
    body = {
        "format": "elock-lock-bundle/1",
        "lock_id": "3f1c2b7a-0d4e-4c5f-9a8b-7c6d5e4f3a2b",
        "name": "front door",
        "secret": LockSecret.generate().to_text(),
        "host": "127.0.0.1",
        "port": 5684,
        "sync_url": "wss://keys.example.org/sync/lock",
        **overrides,
    }
    text = json.dumps(body)
    if raw is not None:  # a JSON value json.dumps cannot write (1e400, NaN)
        text = text.replace('"@RAW@"', raw)
    path = tmp_path / "bundle.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("overrides", "raw"),
    [
        ({"name": "x" * 65}, None),
        ({"name": "two\nlines"}, None),
        ({"host": "not-an-ip"}, None),
        ({"lock_id": "not-a-uuid"}, None),
        ({"sync_url": "http://keys.example.org/"}, None),
        ({"sync_url": "wss://[abc"}, None),
        ({"sync_url": "wss://keys.example.org:99999/sync"}, None),
        ({"sync_ca": 5}, None),
        ({"sync_ca": "é"}, None),
        ({"port": -1}, None),
        ({"port": "abc"}, None),
        ({"port": None}, None),
        ({"port": [1]}, None),
        ({"port": True}, None),
        ({"port": 5684.9}, None),
        ({"port": "@RAW@"}, "1e400"),
        ({"port": "@RAW@"}, "NaN"),
        ({"port": "@RAW@"}, "9" * 5000),
        ({"secret": "short"}, None),
        ({"format": "other"}, None),
    ],
)
def test_a_refused_bundle_leaves_nothing_and_no_traceback(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: dict[str, object],
    raw: str | None,
) -> None:
    lock_dir = tmp_path / "lock"
    bundle = _bundle(tmp_path, raw, **overrides)
    assert main(["init", "--dir", str(lock_dir), "--bundle", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elock-lock: ") and err.count("\n") == 1, err
    assert not lock_dir.exists() or list(lock_dir.iterdir()) == []  # no secret, config or CA


def test_force_with_a_refused_bundle_keeps_the_working_lock(tmp_path: Path) -> None:
    lock_dir = tmp_path / "lock"
    assert main(["init", "--dir", str(lock_dir)]) == 0
    before = {p.name: p.read_bytes() for p in lock_dir.iterdir()}
    bad = _bundle(tmp_path, name="x" * 65)
    assert main(["init", "--dir", str(lock_dir), "--bundle", str(bad), "--force"]) == 2
    assert {p.name: p.read_bytes() for p in lock_dir.iterdir()} == before
    load_config(lock_dir / "lock.toml").load_secret()


@pytest.mark.parametrize("name", ["Tür 🚪", "门", 'front "door" \\ 1'])
def test_any_name_the_key_server_takes_is_accepted(tmp_path: Path, name: str) -> None:
    lock = LockCreate(name=name, host="127.0.0.1", port=5684)
    bundle = _bundle(tmp_path, name=lock.name)
    assert main(["init", "--dir", str(tmp_path / "lock"), "--bundle", str(bundle)]) == 0
    assert load_config(tmp_path / "lock" / "lock.toml").name == name


def test_a_bundle_with_a_dns_host_needs_the_address_to_listen_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bundle's host is what key holders dial (it may be a name); the lock listens
    on an address, so it asks for one rather than fail in ``serve``."""
    bundle = _bundle(tmp_path, host=LockCreate(name="d", host="front.example.org", port=1).host)
    lock_dir = tmp_path / "lock"
    assert main(["init", "--dir", str(lock_dir), "--bundle", str(bundle)]) == 2
    assert "pass --host" in capsys.readouterr().err and not lock_dir.exists()
    args = ["init", "--dir", str(lock_dir), "--bundle", str(bundle), "--host", "192.0.2.10"]
    assert main(args) == 0
    assert load_config(lock_dir / "lock.toml").host == "192.0.2.10"
