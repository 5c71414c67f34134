"""What the demo writes and checks around the programs: configs, pcscd, the RACS log.

Kept apart from the story so that the story reads as the steps a person
would take, and this file as the files an operator would write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elock_demo import pcscd
from elock_demo.services import StoryBrokenError, run

FAST_WORKER = "poll_seconds = 0.2\ncoap_timeout = 2\nretry_base = 0.3\nretry_max = 2\n"


def keyserver_config(directory: Path, pki_dir: Path, sync_url: str | None = None) -> Path:
    """keyserver.toml on SQLite with a fresh master key and the PKI's push credentials;
    ``sync_url`` is what the lock dials (it goes into the lock's bundle)."""
    directory.mkdir(parents=True, exist_ok=True)
    master = directory / "master.key"
    master.write_text(run("key_provisioner.cli", "master-key").strip() + "\n")
    os.chmod(master, 0o600)
    config = directory / "keyserver.toml"
    config.write_text(
        f'[keyserver]\ndatabase_url = "sqlite:///{directory}/keyserver.sqlite3"\n'
        f'master_key_file = "master.key"\n\n[worker]\n{FAST_WORKER}\n'
        f'[push]\nracs_client_cert = "{pki_dir}/racs-user-keyserver.pem"\n'
        f'racs_client_key = "{pki_dir}/racs-user-keyserver.key"\n'
        f'racs_ca = "{pki_dir}/racs-ca.pem"\n'
        f'tls2_cert = "{pki_dir}/key-server.pem"\ntls2_key = "{pki_dir}/key-server.key"\n'
        f'se_issuer_ca = "{pki_dir}/se-issuer-ca.pem"\n'
        + (f'\n[sync]\nurl = "{sync_url}"\n' if sync_url else "")
    )
    return config


def install_lock(directory: Path, bundle: dict[str, Any], bundle_file: Path) -> None:
    """``elock-lock init --bundle``, then the bundle file goes: the secret lives in the lock."""
    bundle_file.write_text(json.dumps(bundle))
    os.chmod(bundle_file, 0o600)
    try:
        run("lock_server.cli", "init", "--dir", str(directory), "--bundle", str(bundle_file))
    finally:
        bundle_file.unlink()
    toml = directory / "lock.toml"
    toml.write_text(toml.read_text().replace("open_seconds = 5.0", "open_seconds = 1.0"))


def racs_config(directory: Path, pki_dir: Path, seid: str, reader: str, port: int) -> Path:
    """racs.toml: TLS#1 with client certificates; one card, the vpcd reader; only the key server."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "users.txt").write_text("keyserver -1\n")
    config = directory / "racs.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\ncert = "{pki_dir}/racs-server.pem"\n'
        f'key = "{pki_dir}/racs-server.key"\nclient_ca = "{pki_dir}/racs-ca.pem"\n\n'
        '[access]\nusers = "users.txt"\nse_default_access = true\n\n'
        f'[[se]]\nseid = "{seid}"\nbackend = "pcsc"\nreader = "{reader}"\n'
    )
    return config


@dataclass
class DemoPcscd:
    """pcscd as a demo service: stopped at the end only if the demo started it."""

    daemon: pcscd.Pcscd
    name: str = "pcscd"
    log_path: str = "(its own)"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.daemon.proc

    def describe(self) -> str:
        return "the pcscd the demo started" if self.daemon.ours else "this machine's pcscd"

    def stop(self) -> None:
        self.daemon.stop()


def start_pcscd() -> DemoPcscd:
    try:
        return DemoPcscd(pcscd.Pcscd.start())
    except pcscd.PcscdError as exc:
        raise StoryBrokenError(str(exc)) from None


def wait_for_reader() -> None:
    try:
        pcscd.wait_for_card(pcscd.VPCD_READER)
    except pcscd.PcscdError as exc:
        raise StoryBrokenError(str(exc)) from None


def tls2_apdus(apdu_log: Path) -> int:
    """How many TLS#2 record APDUs (00 D8) the RACS server carried."""
    return sum(" > 00D8" in line for line in apdu_log.read_text().splitlines())


def clear_in_log(apdu_log: Path, fields: dict[str, str]) -> list[str]:
    """The names of the *fields* whose value is in the RACS APDU log, as hex or as text."""
    text = apdu_log.read_text().upper()
    return [
        name
        for name, value in fields.items()
        if value.encode().hex().upper() in text or value.upper() in text
    ]


def open_with_copy(key: dict[str, Any]) -> str:
    """Open with a copy of the key as issued (identity, PSK) using libcoap's client."""
    exe = shutil.which("coap-client-openssl")
    if exe is None:
        raise StoryBrokenError("coap-client-openssl is missing: run scripts/install.sh")
    args = [exe, "-m", "post", "-u", key["identity"], "-k", key["psk"], "-B", "5", key["uri"]]
    done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    return done.stdout + done.stderr
