"""lock.toml: every bad value is a ``LockConfigError`` naming it, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from lock_server.cli import main
from lock_server.config import load_config
from lock_server.errors import LockConfigError

BASE = '[lock]\nname = "x"\nsecret_file = "lock.secret"\n'
LOCK_ID = 'lock_id = "3f1c2b7a-0d4e-4c5f-9a8b-7c6d5e4f3a2b"\n'
SYNC = '[sync]\nurl = "wss://keys.example.org/sync/lock"\n' + LOCK_ID


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "port = " + "9" * 5000 + "\n", "too large"),  # tomllib: int() digit limit
        (BASE + "open_seconds = " + "9" * 400 + "\n", "lock.open_seconds is out of range"),
        (BASE + "[audit]\naggregate_seconds = " + "9" * 400 + "\n", "out of range"),
        (BASE + SYNC + "ping_seconds = " + "9" * 400 + "\n", "sync.ping_seconds is out of"),
        (BASE + SYNC.replace("keys.example.org", "[abc"), "is not a URL"),
        (BASE + SYNC.replace("keys.example.org", "keys.example.org:99999"), "is not a URL"),
        (BASE + SYNC.replace("keys.example.org", "keys.example.org:x"), "is not a URL"),
        (BASE + SYNC + 'ca_file = "a\\u0000b"\n', "sync.ca_file must not contain a NUL"),
        (BASE + 'data_dir = "a\\u0000b"\n', "lock.data_dir must not contain a NUL"),
        (BASE.replace('"lock.secret"', '"a\\u0000b"'), "lock.secret_file must not contain"),
        (BASE + 'timezone = "Europe/\\u0000Paris"\n', "lock.timezone must not contain"),
        ('[lock]\nname = "two\\nlines"\n', "printable"),
    ],
)
def test_hostile_values_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "lock.toml"
    config.write_text(text)
    with pytest.raises(LockConfigError, match=message):
        load_config(config)


def test_status_says_one_line_for_a_hostile_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "lock.toml"
    config.write_text(BASE + 'data_dir = "a\\u0000b"\n')
    assert main(["status", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elock-lock: ") and err.count("\n") == 1
