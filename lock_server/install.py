"""``elock-lock init``: a lock's files, from a bundle or made fresh, checked before any is written.

A refused bundle must change nothing: not leave a secret that makes the next try
say "exists", and above all not replace a working lock's secret and config under
``--force``. So the config is written and loaded in a staging directory first
(with the CA file it names), and only then are the files put in place, each by
an atomic rename.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elock_common import LockSecret, LockSecretError
from lock_server.config import load_config
from lock_server.errors import LockError

BUNDLE_FORMAT = "elock-lock-bundle/1"
SECRET_FILE, CONFIG_FILE = "lock.secret", "lock.toml"
SYNC_CA_FILE = "sync-ca.pem"  # beside lock.toml, from a bundle's sync_ca
MAX_BUNDLE = 256 * 1024


@dataclass(frozen=True)
class LockFiles:
    """What ``init`` writes: the secret, the config's text and the sync CA (if any)."""

    name: str
    secret: LockSecret
    config: str
    sync_ca: str | None = None


def fresh(name: str, host: str, port: int) -> LockFiles:
    """A standalone lock with a new secret (no key server)."""
    return LockFiles(name, LockSecret.generate(), _config_text(name, host, port, ""))


def from_bundle(path: Path, host: str | None) -> LockFiles:
    """The lock a key server enrolled. *host* (``--host``) is where it listens when
    given; else the bundle's host, which must then be an address, not a name."""
    bundle = _read_bundle(path)
    try:
        secret = LockSecret.from_text(_field(bundle, "secret", str))
    except LockSecretError as exc:
        raise LockError(f"bundle {path}: secret: {exc}") from None
    name = _field(bundle, "name", str)
    port = _field(bundle, "port", int)
    if host is None:
        host = _field(bundle, "host", str)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise LockError(
                f"bundle {path}: its host {host[:100]!r} is a name, not an address this lock"
                " can listen on; pass --host with this lock's IP address"
            ) from None
    url, ca = bundle.get("sync_url"), bundle.get("sync_ca")
    if url is None:
        return LockFiles(name, secret, _config_text(name, host, port, ""))
    if not isinstance(url, str) or not (ca is None or isinstance(ca, str)):
        raise LockError(f"bundle {path}: sync_url and sync_ca must be text")
    table = _sync_table(url, str(bundle.get("lock_id")), ca is not None)
    return LockFiles(name, secret, _config_text(name, host, port, table), ca)


def install(files: LockFiles, directory: Path, *, force: bool) -> Path:
    """Check *files* as ``serve`` will read them, then put them in *directory*."""
    if (directory / SECRET_FILE).exists() and not force:
        raise LockError(
            f"{directory / SECRET_FILE} exists; pass --force to replace this lock's secret"
        )
    with tempfile.TemporaryDirectory(prefix="elock-init-") as staging:
        _write_all(files, Path(staging), secret=False)  # load_config does not read it
        load_config(Path(staging) / CONFIG_FILE)  # a refusal here has written nothing
    directory.mkdir(parents=True, exist_ok=True)
    _write_all(files, directory, secret=True)
    return directory / CONFIG_FILE


def _write_all(files: LockFiles, directory: Path, *, secret: bool) -> None:
    if secret:
        _replace(directory / SECRET_FILE, files.secret.to_text() + "\n", 0o600)
    if files.sync_ca is not None:
        _replace(directory / SYNC_CA_FILE, files.sync_ca, 0o644)
    _replace(directory / CONFIG_FILE, files.config, 0o644)


def _replace(path: Path, text: str, mode: int) -> None:
    """A new file of *mode* renamed over the old one: never the old file's mode, never
    half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_bundle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BUNDLE + 1)
        if len(raw) > MAX_BUNDLE:
            raise LockError(f"bundle {path} is larger than {MAX_BUNDLE} bytes")
        bundle = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except OSError as exc:
        raise LockError(f"cannot read bundle {path}: {exc.strerror}") from None
    except (ValueError, RecursionError):  # JSON, UTF-8, a 5,000-digit integer
        raise LockError(f"bundle {path} is not JSON") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise LockError(f"{path} is not an eLock lock bundle ({BUNDLE_FORMAT})")
    return bundle


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _field(bundle: dict[str, Any], name: str, kind: type) -> Any:
    value = bundle.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise LockError(f"bundle: {name} is missing or not {kind.__name__}")
    return value


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; non-ASCII is written as itself,
    since TOML has no escape for JSON's surrogate pairs)."""
    return json.dumps(text, ensure_ascii=False)


def _config_text(name: str, host: str, port: int, sync_table: str) -> str:
    return (
        f'[lock]\nname = {_toml(name)}\nsecret_file = "{SECRET_FILE}"\ndata_dir = "var"\n'
        f'host = {_toml(host)}\nport = {port}\nopen_seconds = 5.0\ntimezone = "UTC"\n\n'
        '[relay]\nbackend = "simulated"  # "rpi" on a Raspberry Pi\npin = 17\nactive_high = true\n'
        + sync_table
    )


def _sync_table(url: str, lock_id: str, with_ca: bool) -> str:
    """The ``[sync]`` table for a bundle that names its key server's sync URL."""
    ca_line = f'ca_file = "{SYNC_CA_FILE}"  # trust this CA for url, and no other\n'
    return (
        f"\n[sync]\n# the lock dials its key server here; it opens no port for it\n"
        f"url = {_toml(url)}\nlock_id = {_toml(lock_id)}\n{ca_line if with_ca else ''}"
        "start_wait_seconds = 5.0\nping_seconds = 20.0\nmax_clock_skew_seconds = 300.0\n"
    )
