"""`elock-lock` refuses keys that are dead or endless by mistake, and unprotected secrets."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from elock_common import KeyIdentity
from elock_common.identity import NO_NOT_AFTER
from elock_testkit.lockproc import ELOCK_LOCK, LockProcess, _env

# Real programs as processes (elock-lock, coap-open, libcoap...): not in the fast run.
pytestmark = pytest.mark.peer


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ELOCK_LOCK, *args], capture_output=True, text=True, env=_env(), timeout=30
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    assert _run("init", "--dir", str(tmp_path / "lock")).returncode == 0
    return tmp_path / "lock" / "lock.toml"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--valid-for", "0s"], "longer than zero"),
        (["--valid-for", "0m"], "longer than zero"),
        (["--valid-for=-5m"], "longer than zero"),
        (["--not-after", "1"], "in the past"),
        (["--not-after", "2021-01-01T00:00:00"], "in the past"),
        (["--not-before", "2099-01-02", "--not-after", "2099-01-01"], "later than --not-before"),
        (["--valid-for", "1h", "--not-after", "2099-01-01"], "not both"),
    ],
)
def test_mint_refuses_zero_negative_and_past_validity(
    config: Path, args: list[str], message: str
) -> None:
    done = _run("mint", "--config", str(config), *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "identity" not in done.stdout  # no key printed


def test_mint_prints_the_validity_every_time(config: Path) -> None:
    done = _run("mint", "--config", str(config), "--valid-for", "30m")
    assert done.returncode == 0, done.stderr
    assert "valid:    from " in done.stdout and " until " in done.stdout
    endless = _run("mint", "--config", str(config))
    assert "valid:    from now with no end" in endless.stdout
    out = json.loads(_run("mint", "--config", str(config), "--valid-for", "2h", "--json").stdout)
    claims = KeyIdentity.decode(out["identity"])
    assert claims.not_after == out["not_after"] != NO_NOT_AFTER
    assert 7190 <= claims.not_after - time.time() <= 7210 and "until" in out["valid"]


def test_init_force_writes_mode_600_whatever_the_old_mode(tmp_path: Path) -> None:
    directory = tmp_path / "lock"
    assert _run("init", "--dir", str(directory)).returncode == 0
    secret = directory / "lock.secret"
    old = secret.read_text()
    secret.chmod(0o644)
    done = _run("init", "--dir", str(directory), "--force")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and "(mode 600)" in done.stdout
    assert secret.read_text() != old
    assert [p.name for p in directory.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_serve_and_mint_refuse_a_secret_others_can_read(config: Path, mode: int) -> None:
    secret = config.parent / "lock.secret"
    secret.chmod(mode)
    for command in ("mint", "serve"):
        done = _run(command, "--config", str(config))
        assert done.returncode == 2, (command, done.stderr)
        assert str(secret) in done.stderr and f"chmod 600 {secret}" in done.stderr
    secret.chmod(0o600)
    assert _run("mint", "--config", str(config)).returncode == 0


def test_group_read_through_another_owner_is_allowed(config: Path) -> None:
    """The Pi's `root:elock-lock 0640`: the service reads the secret through its group."""
    if os.getuid() != 0:
        pytest.fail("this test chowns a file: run it as root, as CI does")
    secret = config.parent / "lock.secret"
    os.chown(secret, 1, os.getgid())  # owned by another user, our group
    secret.chmod(0o640)
    assert _run("mint", "--config", str(config)).returncode == 0
    secret.chmod(0o644)  # but never world-readable
    done = _run("mint", "--config", str(config))
    assert done.returncode == 2 and f"chmod 640 {secret}" in done.stderr


def test_relay_off_releases_a_relay_left_on(tmp_path: Path) -> None:
    lock = LockProcess.create(tmp_path / "lock")
    lock.data_dir.mkdir(parents=True, exist_ok=True)
    (lock.data_dir / "relay.state").write_text("1\n")  # what a kill -9 mid-open leaves
    assert lock.relay_on()
    done = _run("relay", "off", "--config", str(lock.config))
    assert done.returncode == 0 and "relay off" in done.stdout
    assert not lock.relay_on() and lock.relay_events()[-1] == "off"


@pytest.mark.parametrize("taken", [True, False])
def test_serve_names_an_address_it_cannot_listen_on(tmp_path: Path, taken: bool) -> None:
    """A port in use, or a lock.host this machine does not have: one clear line, exit 2.

    Before, the bind error was buried under a second traceback from the shutdown of a
    context that had no transport ("Set of Tasks/Futures is empty"), which also skipped
    the rest of the clean-up (audit writer, store)."""
    import socket

    lock = LockProcess.create(tmp_path / "lock")
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if taken:
            holder.bind(("127.0.0.1", lock.port))
            expected = "Address already in use"
        else:  # TEST-NET-1 (RFC 5737): on no interface here; binding sends nothing
            text = lock.config.read_text().replace('host = "127.0.0.1"', 'host = "192.0.2.1"')
            lock.config.write_text(text)
            expected = "Cannot assign requested address"
        done = _run("serve", "--config", str(lock.config))
    finally:
        holder.close()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    host = "127.0.0.1" if taken else "192.0.2.1"
    assert f"cannot listen on {host}:{lock.port} (lock.host, lock.port)" in done.stderr
    assert expected in done.stderr, done.stderr
    assert not lock.relay_on()
