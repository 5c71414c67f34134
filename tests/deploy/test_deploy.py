"""The Pi set-up script in a throwaway root, and the systemd units it installs."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from elock_common import LockSecret
from elock_common.pki_profile import make_ca
from lock_server.config import load_config
from tests.conftest import require_tool

# Real peers (libcoap, pcscd, Chromium, systemd-analyze...): not in the fast run.
pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "deploy" / "pi-setup.sh"
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def _bundle(tmp_path: Path, **overrides: object) -> Path:
    secret = LockSecret.generate()
    body = {
        "format": "elock-lock-bundle/1",
        "lock_id": "3f1c2b7a-0d4e-4c5f-9a8b-7c6d5e4f3a2b",
        "name": "front door",
        "secret": secret.to_text(),
        "host": "127.0.0.1",
        "port": 5684,
        "sync_url": "wss://keys.example.org/sync/lock",
        **overrides,
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(body))
    return path


def _setup(*args: str, umask: str = "022") -> subprocess.CompletedProcess[str]:
    command = ["bash", "-c", f'umask {umask} && exec bash "$0" "$@"', str(SETUP), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_setup_into_throwaway_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = _setup(
        "--bundle",
        str(_bundle(tmp_path)),
        "--root",
        str(root),
        "--host",
        "192.0.2.10",
        "--pin",
        "22",
        "--active-low",
        "--open-seconds",
        "3",
        "--timezone",
        "Europe/Paris",
        umask="077",  # a hardened root shell
    )
    assert done.returncode == 0, done.stderr
    # system changes are only announced in a throwaway root
    assert "would run: systemctl enable --now elock-lock.service" in done.stdout
    assert "[lock,pi]" in done.stdout and "server" not in done.stdout
    config = load_config(root / "etc/elock/lock.toml")
    assert (config.host, config.port, config.open_seconds) == ("192.0.2.10", 5684, 3.0)
    assert (config.relay.backend, config.relay.pin, config.relay.active_high) == ("rpi", 22, False)
    assert config.secret_file == Path("/etc/elock/lock.secret") and config.name == "front door"
    secret_path = root / "etc/elock/lock.secret"
    assert LockSecret.from_text(secret_path.read_text())  # the bundle's secret, intact
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "etc/elock").stat().st_mode) == 0o755  # elock-lock gets in
    # the lock dials its key server; nothing opens or forwards a port for it
    assert config.sync is not None and config.sync.url == "wss://keys.example.org/sync/lock"
    assert config.sync.lock_id == "3f1c2b7a-0d4e-4c5f-9a8b-7c6d5e4f3a2b"
    script = SETUP.read_text()
    for opener in ("ufw ", "iptables", "nft ", "firewall-cmd", "upnpc", "natpmp"):
        assert opener not in script and opener not in done.stdout, opener


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = _setup(
        "--bundle", str(_bundle(tmp_path)), "--root", str(root), "--host", "10.1.1.1", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    assert "would write" in done.stdout and not root.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pin", "40"], "--pin must be"),
        (["--open-seconds", "soon"], "--open-seconds"),
        (["--frobnicate"], "unknown option"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    done = _setup(
        "--bundle",
        str(_bundle(tmp_path)),
        "--root",
        str(tmp_path / "r"),
        "--host",
        "10.0.0.1",
        *args,
    )
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "r").exists()


def test_bad_bundle_is_refused(tmp_path: Path) -> None:
    done = _setup(
        "--bundle",
        str(_bundle(tmp_path, format="other")),
        "--root",
        str(tmp_path / "r"),
        "--host",
        "10.0.0.1",
    )
    assert done.returncode != 0 and "not a valid lock bundle" in done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"sync_url": "wss://[abc"},
        {"sync_url": "wss://:/sync"},
        {"sync_url": "wss://keys.example.org:99999/sync"},
        {"sync_url": "wss://keys.example.org:0/sync"},
        {"sync_url": "https://keys.example.org/sync"},
        {"port": True},
        {"port": "5684"},
        {"port": 5684.5},
        {"format": "not-a-bundle"},
    ],
)
def test_a_bad_bundle_is_one_line_and_status_2(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    """Refused before anything is written, by die's status, not set -e's."""
    done = _setup("--bundle", str(_bundle(tmp_path, **overrides)), "--root",
                  str(tmp_path / "r"), "--host", "10.0.0.1")  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("pi-setup: ") and "not a valid lock bundle" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "r").exists()


def _ca_pem() -> str:
    cert, _ = make_ca("Keys CA", now=time.time())
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def test_the_bundles_sync_ca_is_installed_and_named_in_the_config(tmp_path: Path) -> None:
    root, pem = tmp_path / "root", _ca_pem()
    done = _setup("--bundle", str(_bundle(tmp_path, sync_ca=pem)), "--root", str(root),
                  "--host", "192.0.2.10")  # fmt: skip
    assert done.returncode == 0, done.stderr
    installed = root / "etc/elock/sync-ca.pem"
    assert installed.read_text() == pem and stat.S_IMODE(installed.stat().st_mode) == 0o644
    text = (root / "etc/elock/lock.toml").read_text()
    assert tomllib.loads(text)["sync"]["ca_file"] == "/etc/elock/sync-ca.pem"
    (root / "etc/elock/lock.toml").write_text(text.replace('"/etc/elock/', f'"{root}/etc/elock/'))
    config = load_config(root / "etc/elock/lock.toml")  # as the lock will read it
    assert config.sync is not None and config.sync.tls_context() is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {"sync_ca": '-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n"\n[x]'},
        {"sync_ca": "not a certificate"},
        {"sync_ca": "CA", "sync_url": "ws://keys.example.org/sync/lock"},
    ],
)
def test_a_bundle_with_a_bad_sync_ca_is_refused(tmp_path: Path, overrides: dict[str, str]) -> None:
    if overrides["sync_ca"] == "CA":
        overrides["sync_ca"] = _ca_pem()  # a good CA, but for a ws:// URL: no TLS to check
    done = _setup("--bundle", str(_bundle(tmp_path, **overrides)), "--root",
                  str(tmp_path / "r"), "--host", "10.0.0.1")  # fmt: skip
    assert done.returncode != 0 and "not a valid lock bundle" in done.stderr
    assert not (tmp_path / "r").exists()


def _verify_root(tmp_path: Path, units: list[Path]) -> Path:
    """A root holding systemd's own units, our units and stand-ins for our binaries."""
    root = tmp_path / "sysroot"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                exe = root / line.split("=", 1)[1].split()[0].lstrip("/")
                exe.parent.mkdir(parents=True, exist_ok=True)
                exe.write_text("#!/bin/sh\n")
                exe.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_accepts_the_unit(tmp_path: Path, unit: Path) -> None:
    analyze = require_tool("systemd-analyze")
    root = _verify_root(tmp_path, [unit])
    done = subprocess.run(
        [analyze, "verify", f"--root={root}", f"/etc/systemd/system/{unit.name}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above is live: a typo in a unit is reported."""
    analyze = require_tool("systemd-analyze")
    broken = tmp_path / "broken.service"
    broken.write_text(UNITS[0].read_text().replace("ProtectSystem=strict", "ProtectSystem=banana"))
    root = _verify_root(tmp_path, [broken])
    done = subprocess.run(
        [analyze, "verify", f"--root={root}", "/etc/systemd/system/broken.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "banana" in done.stdout + done.stderr
