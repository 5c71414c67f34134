"""The lock's SQLite state and its config file checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lock_server.config import load_config
from lock_server.errors import LockConfigError
from lock_server.store import LockStore


def test_revocations_are_versioned_and_durable(tmp_path: Path) -> None:
    store = LockStore(tmp_path / "s.db")
    assert store.replace_revocations(2, ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]) == 2
    assert store.replace_revocations(1, ["cccccccccccc"]) == 2  # stale push: ignored
    assert store.replace_revocations(2, []) == 2  # repeat: idempotent
    store.close()
    store = LockStore(tmp_path / "s.db")
    assert store.revocation_version == 2
    assert store.is_revoked("aaaaaaaaaaaa") and not store.is_revoked("cccccccccccc")
    assert store.replace_revocations(3, ["cccccccccccc"]) == 3
    assert not store.is_revoked("aaaaaaaaaaaa") and store.revocation_count() == 1


def test_uses_are_counted_up_to_the_limit(tmp_path: Path) -> None:
    store = LockStore(tmp_path / "s.db")
    assert [store.consume_use("k", 2) for _ in range(3)] == [True, True, False]
    assert store.uses("k") == 2
    assert all(store.consume_use("u", 0) for _ in range(5))


def test_audit_pages(tmp_path: Path) -> None:
    store = LockStore(tmp_path / "s.db")
    ids = [
        store.audit(key_id=None, peer="p", action="open", granted=False, reason=str(i))
        for i in range(7)
    ]
    assert [r.reason for r in store.audit_rows(ids[2], 3)] == ["3", "4", "5"]
    assert store.audit_rows(0, 10**9)[-1].id == ids[-1]


SYNC_ID = 'lock_id = "0b7c3e4a-5d2f-4e61-9a8b-1c2d3e4f5a6b"\n'
GOOD = '[lock]\nname = "door"\nport = 5684\n[relay]\nbackend = "simulated"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[lock\n", "not valid TOML"),
        ('[lock]\nname = ""\n', "lock.name"),
        ("[lock]\nport = 1\n", "lock.name is required"),
        ('[lock]\nname = "d"\nport = 70000\n', "lock.port"),
        ('[lock]\nname = "d"\nport = true\n', "lock.port has the wrong type"),
        ('[lock]\nname = "d"\nhost = "0.0.0.0"\n', "concrete address"),
        ('[lock]\nname = "d"\nopen_seconds = 0\n', "open_seconds"),
        ('[lock]\nname = "d"\ntimezone = "Mars/Base"\n', "time zone"),
        ('[lock]\nname = "d"\ncolour = "red"\n', "unknown key(s) in [lock]: colour"),
        ('[lock]\nname = "d"\n[relay]\nbackend = "x"\n', "relay.backend"),
        ('[lock]\nname = "d"\n[relay]\npin = 40\n', "relay.pin"),
        ('[lokc]\nname = "d"\n', "unknown section"),
        ('[lock]\nname = "d"\n[sync]\nlock_id = "x"\n', "sync.url is required"),
        ('[lock]\nname = "d"\n[sync]\nurl = "http://k/sync"\nlock_id = "x"\n', "ws:// or wss://"),
        ('[lock]\nname = "d"\n[sync]\nurl = "wss://k/s"\nlock_id = "x"\n', "a UUID"),
        (
            '[lock]\nname = "d"\n[sync]\nurl = "wss://k/s"\n' + SYNC_ID + "ping_seconds = 0.1\n",
            "sync.ping_seconds must be between 1 and 300",
        ),
        (
            '[lock]\nname = "d"\n[sync]\nurl = "wss://k/s"\n' + SYNC_ID + "colour = 1\n",
            "unknown key(s) in [sync]: colour",
        ),
    ],
)
def test_bad_config_is_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lock.toml"
    path.write_text(text)
    with pytest.raises(LockConfigError, match=re.escape(message)):
        load_config(path)


def test_good_config_and_secret(tmp_path: Path) -> None:
    path = tmp_path / "lock.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.secret_file == tmp_path / "lock.secret" and config.data_dir == tmp_path / "var"
    with pytest.raises(LockConfigError, match="cannot read secret_file"):
        config.load_secret()
    (tmp_path / "lock.secret").write_text("not base64 !!")
    (tmp_path / "lock.secret").chmod(0o600)  # a readable secret is refused before it is parsed
    with pytest.raises(LockConfigError, match=r"base64url|32 bytes"):
        config.load_secret()


def test_audit_log_id_and_delivery_watermark(tmp_path: Path) -> None:
    """The log's random id survives a restart; a new one when its rows are not the server's;
    the watermark only moves forward."""
    store = LockStore(tmp_path / "lock.sqlite3")
    log_id = store.audit_log_id
    assert log_id > 0 and store.audit_log_id == log_id
    for n in range(3):
        store.audit(key_id=None, peer="p", action="open", granted=False, reason=str(n))
    assert store.last_audit_id() == 3
    store.mark_audit_delivered(2)
    store.mark_audit_delivered(1)
    assert store.audit_delivered_through() == 2
    store.close()
    store = LockStore(tmp_path / "lock.sqlite3")
    assert store.audit_log_id == log_id
    renamed = store.new_audit_log_id()
    assert renamed != log_id and store.audit_log_id == renamed
    assert store.audit_delivered_through() == 0  # the server holds none of the new log yet
    store.close()
