"""Settings from the environment and an optional TOML file, checked in full.

Precedence: environment variable, then the TOML file named by ``--config`` or
``ELOCK_KEYSERVER_CONFIG``, then the default. There is no default master key:
without ``ELOCK_MASTER_KEY`` or a ``master_key_file`` nothing starts. Every
error names the setting and where it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from elock_common.lock_sync import sync_url_problem
from key_provisioner.core.crypto import MasterKey
from key_provisioner.core.errors import ConfigError

ENV_PREFIX = "ELOCK_KEYSERVER_"
CONFIG_ENV = "ELOCK_KEYSERVER_CONFIG"
MASTER_KEY_ENV = "ELOCK_MASTER_KEY"
DEFAULT_DATABASE_URL = "sqlite:///elock-keyserver.sqlite3"
_DRIVERS = ("sqlite", "postgresql+psycopg")


@dataclass(frozen=True)
class WorkerSettings:
    """The background worker that pushes key containers into secure elements.

    ``coap_timeout``, ``audit_seconds`` and ``admin_key_seconds`` were for visits to
    locks, which dial the key server now; they are still accepted (and ignored) so
    that existing files load.
    """

    enabled: bool = True
    poll_seconds: float = 5.0  # how often to look for due work when not woken
    coap_timeout: float = 5.0  # ignored: locks dial in (was: one CoAP exchange with a lock)
    retry_base: float = 2.0  # first retry delay; doubles per failed attempt
    retry_max: float = 300.0  # cap of the retry delay
    audit_seconds: float = 60.0  # ignored: locks upload their audit rows as they write them
    batch: int = 20  # locks claimed per round
    admin_key_seconds: int = 300  # ignored: no admin key is minted for locks any more


@dataclass(frozen=True)
class SyncSettings:
    """The locks' own connections to the key server (``/sync/lock``)."""

    url: str | None = None  # what locks dial (wss://.../sync/lock); goes into every bundle
    idle_timeout_seconds: float = 60.0  # a lock silent this long is gone (it pings every 20 s)
    handshake_timeout_seconds: float = 5.0  # hello and proof must come within this
    max_connections: int = 20_000  # per process; more are refused at once
    max_handshakes: int = 64  # per process, at the same time; more are refused at once
    # The CA (PEM) that signed the certificate locks see at ``url``, from ``ca_file``:
    # into every bundle, so a lock trusts it and nothing else. None: public CAs.
    ca_pem: str | None = field(default=None, repr=False)


PUSH_FILES = (
    "racs_client_cert",
    "racs_client_key",
    "racs_ca",
    "tls2_cert",
    "tls2_key",
    "se_issuer_ca",
)
PUSH_NOT_CONFIGURED = (
    "pushing into secure elements is not configured (set the [push] settings: "
    + ", ".join(PUSH_FILES)
    + ")"
)


@dataclass(frozen=True)
class PushSettings:
    """Credentials for writing key containers into secure elements through RACS.

    TLS#1 (to the RACS server): ``racs_client_cert``/``racs_client_key`` and
    ``racs_ca`` (the CA of the RACS servers). TLS#2 (into the card):
    ``tls2_cert``/``tls2_key``, and ``se_issuer_ca``, the CA that signs the
    cards' certificates. All are file paths, checked readable at start-up.
    """

    racs_client_cert: Path
    racs_client_key: Path
    racs_ca: Path
    tls2_cert: Path
    tls2_key: Path
    se_issuer_ca: Path
    timeout: float = 30.0  # one push: RACS connection, TLS#2 and the commands
    racs_server_name: str | None = None  # TLS#1 server name, if not the registered host
    # Card syncs that hosts dial in (``api.card_sync``): at most this many per client
    # address per minute, at most this many at once in one server process, and at most
    # this many of them from one client address (an IPv6 /64) at once.
    sync_per_minute: int = 30
    sync_concurrent: int = 16
    sync_per_address: int = 4


@dataclass(frozen=True)
class Settings:
    master_key: MasterKey = field(repr=False)
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    worker: WorkerSettings = WorkerSettings()
    push: PushSettings | None = None  # None: pushing is disabled (keys stay pending)
    sync: SyncSettings = SyncSettings()


_SERVER_FIELDS: dict[str, Any] = {
    "database_url": str,
    "master_key_file": str,
    "host": str,
    "port": int,
}
_WORKER_FIELDS: dict[str, Any] = {
    "enabled": bool,
    "poll_seconds": (int, float),
    "coap_timeout": (int, float),
    "retry_base": (int, float),
    "retry_max": (int, float),
    "audit_seconds": (int, float),
    "batch": int,
    "admin_key_seconds": int,
}
_SYNC_FIELDS: dict[str, Any] = {
    "url": str,
    "idle_timeout_seconds": (int, float),
    "handshake_timeout_seconds": (int, float),
    "max_connections": int,
    "max_handshakes": int,
    "ca_file": str,
}
_PUSH_OPTIONS: dict[str, Any] = {
    "timeout": (int, float),
    "racs_server_name": str,
    "sync_per_minute": int,
    "sync_concurrent": int,
    "sync_per_address": int,
}
_PUSH_FIELDS: dict[str, Any] = {name: str for name in PUSH_FILES} | _PUSH_OPTIONS


def load_settings(
    config_file: Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if env is None else env
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if config_file is not None:
        raw, base = _read_toml(config_file), config_file.parent
    unknown = set(raw) - {"keyserver", "worker", "push", "sync"}
    if unknown:
        raise ConfigError(f"{config_file}: unknown section(s) {', '.join(sorted(unknown))}")
    server = _merge("keyserver", raw.get("keyserver", {}), _SERVER_FIELDS, env, ENV_PREFIX)
    worker = _merge("worker", raw.get("worker", {}), _WORKER_FIELDS, env, ENV_PREFIX + "WORKER_")
    push = _merge("push", raw.get("push", {}), _PUSH_FIELDS, env, ENV_PREFIX + "PUSH_")
    sync = _merge("sync", raw.get("sync", {}), _SYNC_FIELDS, env, ENV_PREFIX + "SYNC_")
    return Settings(
        master_key=_master_key(server.get("master_key_file"), env, base),
        database_url=_database_url(server.get("database_url", DEFAULT_DATABASE_URL), base),
        host=server.get("host", "127.0.0.1"),
        port=_ranged("keyserver.port", server.get("port", 8080), 1, 65535),
        worker=_worker(worker),
        push=_push(push, base),
        sync=_sync(sync, base),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    except ValueError:  # an integer of more digits than Python converts
        raise ConfigError(f"config {path} holds a number too large to read") from None


MAX_INTEGER = 2**53  # larger integers in a config are mistakes (and float() may overflow)


def _merge(
    section: str, table: Any, fields: dict[str, Any], env: Mapping[str, str], prefix: str
) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table")
    unknown = set(table) - set(fields)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{section}]: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, kind in fields.items():
        var = prefix + name.upper()
        if var in env:
            values[name] = _from_env(var, env[var], kind)
        elif name in table:
            value = table[name]
            # bool is an int in Python; `port = true` is a mistake, not 1.
            if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
                raise ConfigError(f"{section}.{name} has the wrong type ({type(value).__name__})")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
                raise ConfigError(f"{section}.{name} is out of range")
            values[name] = value
        if isinstance(values.get(name), str) and "\x00" in values[name]:
            raise ConfigError(f"{section}.{name} must not contain a NUL character")
    return values


def _from_env(var: str, text: str, kind: Any) -> Any:
    if kind is bool:
        if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"{var} must be true or false, not {text!r}")
        return text.lower() in ("1", "true", "yes")
    if kind is str:
        return text
    try:
        return int(text) if kind is int else float(text)
    except ValueError:
        raise ConfigError(f"{var} must be a number, not {text!r}") from None


def _master_key(file_setting: str | None, env: Mapping[str, str], base: Path) -> MasterKey:
    if env.get(MASTER_KEY_ENV):
        return MasterKey.from_text(env[MASTER_KEY_ENV], source=MASTER_KEY_ENV)
    path_text = env.get(MASTER_KEY_ENV + "_FILE") or file_setting
    if not path_text:
        raise ConfigError(
            f"no master key: set {MASTER_KEY_ENV}, {MASTER_KEY_ENV}_FILE or"
            " keyserver.master_key_file (make one with `elock-keyserver master-key`)"
        )
    path = _resolve(base, path_text)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII"
        raise ConfigError(f"cannot read master key file {path}: {reason}") from None
    return MasterKey.from_text(text, source=f"master key file {path}")


def _resolve(base: Path, text: str) -> Path:
    """A path setting: ``~`` expanded, and relative to the config file's directory."""
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base / path


def _database_url(text: str, base: Path) -> str:
    try:
        url = make_url(text)
        url.port  # noqa: B018 (make_url leaves a port that is not a number to this)
    except (ArgumentError, ValueError):
        # Not the text: a URL holds its password.
        raise ConfigError(
            "database_url is not a database URL (driver://user:password@host:port/name)"
        ) from None
    if url.drivername not in _DRIVERS:
        hint = " (use postgresql+psycopg://)" if url.get_backend_name() == "postgresql" else ""
        raise ConfigError(f"database_url must use one of {', '.join(_DRIVERS)}{hint}")
    if url.drivername == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("database_url: SQLite needs a file (sqlite:///path/to/file)")
        path = Path(url.database)
        if not path.is_absolute():
            url = url.set(database=str(base / path))
    return url.render_as_string(hide_password=False)


def _ranged(name: str, value: Any, low: float, high: float) -> Any:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}")
    return value


def _worker(values: dict[str, Any]) -> WorkerSettings:
    checks = {
        "poll_seconds": (0.05, 3600),
        "coap_timeout": (0.1, 120),
        "retry_base": (0.01, 3600),
        "retry_max": (0.01, 86400),
        "audit_seconds": (0.1, 86400),
        "batch": (1, 1000),
        "admin_key_seconds": (30, 86400),
    }
    for name, (low, high) in checks.items():
        if name in values:
            _ranged(f"worker.{name}", values[name], low, high)
    settings = WorkerSettings(**values)
    if settings.retry_max < settings.retry_base:
        raise ConfigError("worker.retry_max must not be below worker.retry_base")
    return settings


def _sync(values: dict[str, Any], base: Path) -> SyncSettings:
    checks = {
        "idle_timeout_seconds": (2, 3600),
        "handshake_timeout_seconds": (0.5, 60),
        "max_connections": (1, 1_000_000),
        "max_handshakes": (1, 10_000),
    }
    for name, (low, high) in checks.items():
        if name in values:
            _ranged(f"sync.{name}", values[name], low, high)
    url = values.pop("url", None) or None
    if url is not None and (problem := sync_url_problem(url)):
        raise ConfigError(f"sync.url {problem}")
    ca_file = values.pop("ca_file", None) or None
    ca_pem = None if ca_file is None else _sync_ca(ca_file, url, base)
    return SyncSettings(url=url, ca_pem=ca_pem, **values)


MAX_CA_BYTES = 64 * 1024  # a bundle carries it: a chain of a few certificates, not a store


def _sync_ca(ca_file: str, url: str | None, base: Path) -> str:
    if url is None or not url.lower().startswith("wss://"):
        raise ConfigError("sync.ca_file needs a wss:// sync.url (locks check it in TLS)")
    path = _resolve(base, ca_file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"sync.ca_file: cannot read {path}: {exc.strerror}") from None
    try:
        if len(data) > MAX_CA_BYTES:
            raise ValueError
        x509.load_pem_x509_certificates(data)
        return data.decode("ascii")
    except ValueError:  # also UnicodeDecodeError
        raise ConfigError(
            f"sync.ca_file: {path} is not PEM certificates of at most {MAX_CA_BYTES} bytes"
        ) from None


def _push(values: dict[str, Any], base: Path) -> PushSettings | None:
    """All six credential files, or none of them (pushing disabled).

    ``timeout`` or ``racs_server_name`` without the files is a mistake (a table
    half written, a variable set on the wrong machine), not "pushing disabled".
    """
    given = [name for name in PUSH_FILES if values.get(name)]
    options = [name for name in _PUSH_OPTIONS if values.get(name) not in (None, "")]
    if not given and not options:
        return None
    missing = [name for name in PUSH_FILES if name not in given]
    if missing:
        what = "push needs all of its credentials"
        if not given:
            what = f"{' and '.join(f'push.{name}' for name in options)} given without"
            what += " the push credentials"
        raise ConfigError(
            f"{what}; missing "
            + ", ".join(f"push.{name} ({ENV_PREFIX}PUSH_{name.upper()})" for name in missing)
        )
    paths: dict[str, Path] = {}
    for name in PUSH_FILES:
        path = _resolve(base, values[name])
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"push.{name}: cannot read {path}: {exc.strerror}") from None
        paths[name] = path
    timeout = _ranged("push.timeout", values.get("timeout", 30.0), 1, 600)
    return PushSettings(
        **paths, timeout=float(timeout), racs_server_name=values.get("racs_server_name") or None,
        sync_per_minute=_ranged("push.sync_per_minute", values.get("sync_per_minute", 30), 1,
                                10_000),
        sync_concurrent=_ranged("push.sync_concurrent", values.get("sync_concurrent", 16), 1,
                                1000),
        sync_per_address=_ranged("push.sync_per_address", values.get("sync_per_address", 4), 1,
                                 1000),
    )  # fmt: skip
