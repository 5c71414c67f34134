"""The lock's config file (TOML), checked in full before anything starts.

A lock that half-understands its config is worse than one that refuses to
start, so every field is validated and every error names the field.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import tomllib
import uuid
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elock_common import LockSecret, LockSecretError
from elock_common.lock_sync import MAX_CLOCK_SKEW, MIN_CLOCK_SKEW, sync_url_problem
from lock_server.errors import LockConfigError

DEFAULT_PORT = 5684
MAX_INTEGER = 2**53  # larger integers in a config are mistakes (and float() may overflow)
DEFAULT_METRICS_PORT = 9470


@dataclass(frozen=True)
class RelayConfig:
    backend: str = "simulated"  # or "rpi"
    pin: int = 17  # BCM numbering
    active_high: bool = True


@dataclass(frozen=True)
class MetricsConfig:
    """The opt-in Prometheus listener (``lock_server.metrics``)."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback: a local agent scrapes it
    port: int = DEFAULT_METRICS_PORT


@dataclass(frozen=True)
class AuditConfig:
    max_rows: int = 100_000  # pruning keeps at most this many (undelivered rows excepted)
    aggregate_seconds: float = 60.0  # period over which unauthenticated refusals are counted


@dataclass(frozen=True)
class SyncConfig:
    """The lock's outbound connection to its key server (``[sync]``)."""

    url: str  # ws:// or wss://, from the bundle
    lock_id: str  # the lock's id at the key server, from the bundle
    start_wait_seconds: float = 5.0  # on start, wait this long for the list before serving
    ping_seconds: float = 20.0  # below the 30 s idle timeout of common NATs and proxies
    max_clock_skew_seconds: float = 300.0  # beyond this, time-bounded keys are refused
    reconnect_max_seconds: float = 60.0  # cap of the reconnect backoff
    # wss:// only: trust this CA (PEM) for the key server, and no other; None: the
    # system's trust store. From the bundle when the key server sets its sync.ca_file.
    ca_file: Path | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``url``; None where websockets' default is right (ws://,
        or wss:// checked against the system's trust store)."""
        if self.ca_file is None:
            return None
        try:
            return ssl.create_default_context(cafile=str(self.ca_file))
        except ssl.SSLError:  # before OSError, which it is
            raise LockConfigError(f"sync.ca_file {self.ca_file} holds no PEM certificate") from None
        except OSError as exc:
            raise LockConfigError(
                f"cannot read sync.ca_file {self.ca_file}: {exc.strerror}"
            ) from None


@dataclass(frozen=True)
class LockConfig:
    name: str
    secret_file: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    open_seconds: float = 5.0
    # How long after its handshake a DTLS session may carry requests: each Open makes a
    # new one, so a request the link held back cannot open the door long after its
    # holder was told "the door may be open" (the key host gives up after 20 s).
    session_seconds: float = 30.0
    timezone: str = "UTC"
    relay: RelayConfig = RelayConfig()
    audit: AuditConfig = AuditConfig()
    metrics: MetricsConfig = MetricsConfig()
    sync: SyncConfig | None = None  # None: a standalone lock that syncs with nothing

    def load_secret(self) -> LockSecret:
        try:
            check_secret_mode(self.secret_file)
            text = self.secret_file.read_text(encoding="ascii")
        except OSError as exc:
            reason = f"cannot read secret_file {self.secret_file}: {exc.strerror}"
            raise LockConfigError(reason) from None
        try:
            return LockSecret.from_text(text)
        except LockSecretError as exc:
            raise LockConfigError(f"secret_file {self.secret_file}: {exc}") from None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


def check_secret_mode(path: Path) -> None:
    """Refuse a secret others can read, as ssh refuses an unprotected private key.

    World bits are always refused. Group bits are refused on a file the reading
    user owns (nobody else needs them); a file owned by someone else (the Pi's
    ``root:elock-lock 0640``) is read *through* its group, which is the point.
    """
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    loose = mode & 0o077 if info.st_uid == os.getuid() else mode & 0o007
    if loose:
        raise LockConfigError(
            f"secret_file {path} is readable or writable by others (mode {mode:04o}); "
            f"run: chmod {'600' if info.st_uid == os.getuid() else '640'} {path}"
        )


def load_config(path: Path) -> LockConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LockConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LockConfigError(f"config {path} is not valid TOML: {exc}") from None
    except ValueError:  # an integer of more digits than Python converts
        raise LockConfigError(f"config {path} holds a number too large to read") from None
    return parse_config(raw, base=path.parent)


def parse_config(raw: dict[str, Any], *, base: Path) -> LockConfig:
    unknown = set(raw) - {"lock", "relay", "audit", "metrics", "sync"}
    if unknown:
        raise LockConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    lock = _section(raw, "lock", _LOCK_KEYS)

    name = _get(lock, "lock.name", str, None)
    if not name or len(name) > 64 or not name.isprintable():
        raise LockConfigError("lock.name must be 1 to 64 printable characters")
    host = _get(lock, "lock.host", str, "127.0.0.1")
    try:
        if ipaddress.ip_address(host).is_unspecified:
            raise LockConfigError("lock.host must be a concrete address, not 0.0.0.0 or ::")
    except ValueError:
        raise LockConfigError(f"lock.host {host!r} is not an IP address") from None
    port = _get(lock, "lock.port", int, DEFAULT_PORT)
    if not 1 <= port <= 65535:
        raise LockConfigError("lock.port must be 1..65535")
    open_seconds = _seconds(lock, "lock.open_seconds", 5.0, 0.1, 60)
    session_seconds = _seconds(lock, "lock.session_seconds", 30.0, 1, 300)
    timezone = _get(lock, "lock.timezone", str, "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise LockConfigError(f"lock.timezone {timezone!r} is not a known time zone") from None

    audit = _audit(_section(raw, "audit", {"max_rows", "aggregate_seconds"}))
    sync = _sync(raw, base)
    return LockConfig(
        name=name,
        secret_file=_path(base, _get(lock, "lock.secret_file", str, "lock.secret")),
        data_dir=_path(base, _get(lock, "lock.data_dir", str, "var")),
        host=host,
        port=port,
        open_seconds=open_seconds,
        session_seconds=session_seconds,
        timezone=timezone,
        relay=_relay(_section(raw, "relay", {"backend", "pin", "active_high"})),
        audit=audit,
        metrics=_metrics(_section(raw, "metrics", {"enabled", "host", "port"})),
        sync=sync,
    )


_LOCK_KEYS = {"name", "secret_file", "data_dir", "host", "port", "open_seconds",
              "session_seconds", "timezone"}  # fmt: skip


def _seconds(
    section: dict[str, Any], dotted: str, default: float, low: float, high: float
) -> float:
    seconds = float(_get(section, dotted, (int, float), default))
    if not low <= seconds <= high:
        raise LockConfigError(f"{dotted} must be between {low:g} and {high:g}")
    return seconds


def _relay(section: dict[str, Any]) -> RelayConfig:
    backend = _get(section, "relay.backend", str, "simulated")
    if backend not in ("simulated", "rpi"):
        raise LockConfigError("relay.backend must be 'simulated' or 'rpi'")
    pin = _get(section, "relay.pin", int, 17)
    if not 2 <= pin <= 27:
        raise LockConfigError("relay.pin must be a BCM GPIO number 2..27")
    return RelayConfig(backend, pin, _get(section, "relay.active_high", bool, True))


def _audit(section: dict[str, Any]) -> AuditConfig:
    max_rows = _get(section, "audit.max_rows", int, 100_000)
    if not 1_000 <= max_rows <= 10_000_000:
        raise LockConfigError("audit.max_rows must be between 1000 and 10000000")
    seconds = float(_get(section, "audit.aggregate_seconds", (int, float), 60.0))
    if not 1 <= seconds <= 3600:
        raise LockConfigError("audit.aggregate_seconds must be between 1 and 3600")
    return AuditConfig(max_rows=max_rows, aggregate_seconds=seconds)


def _metrics(section: dict[str, Any]) -> MetricsConfig:
    host = _get(section, "metrics.host", str, "127.0.0.1")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise LockConfigError(f"metrics.host {host!r} is not an IP address") from None
    port = _get(section, "metrics.port", int, DEFAULT_METRICS_PORT)
    if not 1 <= port <= 65535:
        raise LockConfigError("metrics.port must be 1..65535")
    return MetricsConfig(_get(section, "metrics.enabled", bool, False), host, port)


_SYNC_BOUNDS = {
    "start_wait_seconds": (0.0, 300.0),
    "ping_seconds": (1.0, 300.0),
    "max_clock_skew_seconds": (MIN_CLOCK_SKEW, MAX_CLOCK_SKEW),
    "reconnect_max_seconds": (1.0, 3600.0),
}


def _sync(raw: dict[str, Any], base: Path) -> SyncConfig | None:
    if "sync" not in raw:
        return None
    sync = _section(raw, "sync", {"url", "lock_id", "ca_file", *_SYNC_BOUNDS})
    url = _get(sync, "sync.url", str, None)
    if problem := sync_url_problem(url):
        raise LockConfigError(f"sync.url {problem}")
    lock_id = _get(sync, "sync.lock_id", str, None)
    try:
        lock_id = str(uuid.UUID(lock_id))
    except ValueError:
        raise LockConfigError("sync.lock_id must be the lock's id (a UUID)") from None
    numbers: dict[str, float] = {}
    for name, (low, high) in _SYNC_BOUNDS.items():
        default = getattr(SyncConfig, name)
        value = float(_get(sync, f"sync.{name}", (int, float), default))
        if not low <= value <= high:
            raise LockConfigError(f"sync.{name} must be between {low:g} and {high:g}")
        numbers[name] = value
    ca_file = sync.get("ca_file")
    if ca_file is not None:
        if not url.lower().startswith("wss://"):
            raise LockConfigError("sync.ca_file needs a wss:// sync.url (ws:// has no TLS)")
        ca_file = _path(base, _get(sync, "sync.ca_file", str, None))
    config = SyncConfig(url=url, lock_id=lock_id, ca_file=ca_file, **numbers)
    config.tls_context()  # an unreadable or empty CA file is a config error, found now
    return config


def _section(raw: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise LockConfigError(f"[{name}] must be a table")
    unknown = set(section) - allowed
    if unknown:
        raise LockConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    return section


def _get(section: dict[str, Any], dotted: str, kind: Any, default: Any) -> Any:
    key = dotted.split(".", 1)[1]
    if key not in section:
        if default is None:
            raise LockConfigError(f"{dotted} is required")
        return default
    value = section[key]
    # bool is an int in Python; a port of `true` is a mistake, not 1.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise LockConfigError(f"{dotted} has the wrong type ({type(value).__name__})")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise LockConfigError(f"{dotted} is out of range")
    if isinstance(value, str) and "\x00" in value:
        raise LockConfigError(f"{dotted} must not contain a NUL character")
    return value


def _path(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path
