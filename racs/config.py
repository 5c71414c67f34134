"""racs.toml: where the certificates, the seed-style access files and the SEs are.

Paths are relative to the directory of racs.toml. Unknown keys are errors, so
a typo (``idle_timout``) fails at start-up instead of silently keeping a
default. Every :class:`ConfigError` names the file and the key or line at fault.
The format is documented, with an example, in docs/racs.md.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from racs.access import (
    AccessPolicy,
    load_atr_map,
    load_filters,
    load_reader_names,
    load_seid_table,
    load_serial_map,
    load_users,
    read_config_text,
)
from racs.backends import InProcessCard, PcscCard, SecureElement, card_serial, list_pcsc_readers
from racs.errors import ConfigError, RacsError, shown
from racs.registry import Registry, Slot
from racs.server import DEFAULT_PORT
from racs.session import Limits
from racs.style import ServerStyle

log = logging.getLogger(__name__)
_SECTIONS: dict[str, set[str]] = {
    "server": {
        "host",
        "port",
        "cert",
        "key",
        "client_ca",
        "idle_timeout",
        "max_sessions",
        "max_sessions_per_user",
        "log_apdus",
        "style",
    },
    "limits": {"max_line", "max_block_lines", "max_block_bytes", "max_response_bytes"},
    "access": {
        "users",
        "seid_dir",
        "filters",
        "se_default_access",
        "filter_default",
        "require_select",
    },
    "seids": {"readers", "readersn", "cardsn", "atr"},
    "metrics": {"enabled", "host", "port"},
}
_SE_KEYS = {"seid", "backend", "applet", "serial", "offload", "reader"}
# The largest integer a float setting takes: float() of 10**400 overflows, and long
# before that a number is a typo. 2**53 is where floats stop holding every integer.
_FLOAT_INT_MAX = 2**53


@dataclass
class RacsConfig:
    path: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    cert: Path = Path()
    key: Path = Path()
    client_ca: Path = Path()
    idle_timeout: float = 60.0
    max_sessions: int = 1024
    max_sessions_per_user: int = 256  # one user's share: a quarter of the default max_sessions
    log_apdus: Path | None = None  # append every APDU exchanged with a card (audit)
    style: ServerStyle = ServerStyle.ELOCK  # 61xx/6Cxx and wording (docs/racs.md)
    limits: Limits = field(default_factory=Limits)
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    se: list[dict[str, Any]] = field(default_factory=list)
    seids: dict[str, Path] = field(default_factory=dict)
    # The opt-in Prometheus listener (racs.metrics), loopback unless told otherwise.
    metrics_enabled: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9471


def _typed(table: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = table.get(key, default)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > _FLOAT_INT_MAX:
            raise ConfigError(f"{where}: '{key}' is out of range, not {shown(value)}")
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {kind.__name__}, not {shown(value)}")
    return value


def _ranged(value: Any, key: str, where: str, low: float, high: float) -> Any:
    if not low <= value <= high:
        raise ConfigError(
            f"{where}: '{key}' must be between {low:g} and {high:g}, not {shown(value)}"
        )
    return value


def load_config(path: Path) -> RacsConfig:
    """Read racs.toml and every file it names; ConfigError on the first problem."""
    raw = _read_toml(path)
    cfg = RacsConfig(path)
    _server_section(cfg, raw.get("server", {}))
    lim, lw = raw.get("limits", {}), f"{path} [limits]"
    cfg.limits = Limits(**{k: _ranged(_typed(lim, k, int, lw, 0), k, lw, 1, 2**31) for k in lim})
    cfg.policy = _access_policy(path, raw.get("access", {}))
    met, mw = raw.get("metrics", {}), f"{path} [metrics]"
    cfg.metrics_enabled = _typed(met, "enabled", bool, mw, False)
    cfg.metrics_host = _typed(met, "host", str, mw, cfg.metrics_host)
    cfg.metrics_port = _ranged(_typed(met, "port", int, mw, cfg.metrics_port), "port", mw, 1, 65535)
    seids = raw.get("seids", {})
    cfg.seids = {k: _named_file(path, seids, k, "seids") for k in seids}
    cfg.se = _se_specs(path, raw.get("se", []))
    return cfg


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed file, with every section and key known (a typo fails here)."""
    raw = _parse_toml(path, read_config_text(path))
    for name, value in raw.items():
        if name == "se":
            continue
        if name not in _SECTIONS or not isinstance(value, dict):
            raise ConfigError(f"{path}: unknown section [{name}]")
        unknown = set(value) - _SECTIONS[name]
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    return raw


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    """tomllib.loads, every failure a ConfigError.

    An integer past Python's digit limit (``sys.set_int_max_str_digits``) makes
    tomllib raise a plain ValueError that names no line: the first run of more
    digits than that is the culprit, so its line is named instead.
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    except ValueError as err:
        limit = sys.get_int_max_str_digits()
        runs = (m for m in re.finditer(r"[0-9_]+", text) if limit and len(m[0]) > limit)
        found = next(runs, None)
        if found is None:
            raise ConfigError(f"{path}: not valid TOML: {shown(str(err), 200)}") from err
        line = text.count("\n", 0, found.start()) + 1
        raise ConfigError(f"{path}:{line}: an integer has more than {limit} digits") from None


def _path_text(table: dict[str, Any], key: str, where: str) -> str:
    """A path setting's string. A NUL, which no file name holds, is refused here:
    open() would raise ValueError and exists() would just say False."""
    text: str = _typed(table, key, str, where, "")
    if "\0" in text:
        raise ConfigError(f"{where}: '{key}' contains a NUL character")
    return text


def _named_file(
    path: Path, table: dict[str, Any], key: str, section: str, required: bool = True
) -> Path:
    """A file named relative to racs.toml, which must exist; ``Path()`` if optional and absent."""
    if key not in table:
        if required:
            raise ConfigError(f"{path} [{section}]: '{key}' is required")
        return Path()
    where = f"{path} [{section}]"
    p = path.parent / _path_text(table, key, where)
    try:
        present = p.exists()
    except OSError as err:  # a name too long, a directory we may not search...
        raise ConfigError(f"{where}: {key} = {shown(str(p))}: {err.strerror}") from err
    if not present:
        raise ConfigError(f"{where}: {key} = {p} does not exist")
    return p


def _server_section(cfg: RacsConfig, srv: dict[str, Any]) -> None:
    path, where = cfg.path, f"{cfg.path} [server]"
    cfg.host = _typed(srv, "host", str, where, cfg.host)
    cfg.port = _ranged(_typed(srv, "port", int, where, cfg.port), "port", where, 0, 65535)
    cfg.cert = _named_file(path, srv, "cert", "server")
    cfg.key = _named_file(path, srv, "key", "server")
    cfg.client_ca = _named_file(path, srv, "client_ca", "server")
    idle = _typed(srv, "idle_timeout", float, where, cfg.idle_timeout)
    cfg.idle_timeout = _ranged(idle, "idle_timeout", where, 0.1, 86400)
    sessions = _typed(srv, "max_sessions", int, where, cfg.max_sessions)
    cfg.max_sessions = _ranged(sessions, "max_sessions", where, 1, 1_000_000)
    per_user = _typed(srv, "max_sessions_per_user", int, where, cfg.max_sessions_per_user)
    cfg.max_sessions_per_user = _ranged(per_user, "max_sessions_per_user", where, 1, 1_000_000)
    style = _typed(srv, "style", str, where, cfg.style.value)
    try:
        cfg.style = ServerStyle(style)
    except ValueError:
        names = " or ".join(repr(s.value) for s in ServerStyle)
        raise ConfigError(f"{where}: 'style' must be {names}, not {shown(style)}") from None
    if "log_apdus" in srv:
        cfg.log_apdus = path.parent / _path_text(srv, "log_apdus", where)


def _access_policy(path: Path, acc: dict[str, Any]) -> AccessPolicy:
    policy = AccessPolicy(users=load_users(_named_file(path, acc, "users", "access")))
    seid_dir = _named_file(path, acc, "seid_dir", "access", required=False)
    if seid_dir != Path():
        for table in sorted(seid_dir.glob("*.txt")):
            policy.seid_tables[table.stem] = load_seid_table(table)
    if "filters" in acc:
        policy.filters = load_filters(_named_file(path, acc, "filters", "access"))
    aw = f"{path} [access]"
    policy.se_default_access = _typed(acc, "se_default_access", bool, aw, False)
    policy.require_select = _typed(acc, "require_select", bool, aw, False)
    default = _typed(acc, "filter_default", str, aw, "allow")
    if default not in ("allow", "deny"):
        raise ConfigError(f"{aw}: filter_default must be 'allow' or 'deny'")
    policy.filter_default_allow = default == "allow"
    return policy


def _se_specs(path: Path, se_list: Any) -> list[dict[str, Any]]:
    if not isinstance(se_list, list):
        raise ConfigError(f"{path}: 'se' must be an array of tables ([[se]])")
    for number, spec in enumerate(se_list, 1):
        if not isinstance(spec, dict) or set(spec) - _SE_KEYS:
            raise ConfigError(f"{path} [[se]] #{number}: unknown keys or not a table")
        if spec.get("backend", "inprocess") not in ("inprocess", "pcsc"):
            raise ConfigError(f"{path} [[se]] #{number}: backend is 'inprocess' or 'pcsc'")
    return list(se_list)


def import_applet(spec: str, where: str) -> Any:
    """``package.module:factory`` to a fresh applet object (factory called once)."""
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        applet = factory()
    except Exception as err:
        raise ConfigError(f"{where}: cannot load applet {spec!r}: {err}") from err
    if not callable(getattr(applet, "process", None)):
        raise ConfigError(f"{where}: {spec!r} has no process(apdu) method")
    return applet


async def _mapped_seid(se: SecureElement, cfg: RacsConfig) -> str | None:
    """The seed's SEID allocation: reader serial (or name), then card serial."""
    if "readersn" in cfg.seids:
        by_reader = load_serial_map(cfg.seids["readersn"])
        serial = await se.serial()
        for key in (serial, se.name):
            if key is not None and key in by_reader:
                return by_reader[key]
    if "cardsn" in cfg.seids and "atr" in cfg.seids:
        by_card = load_serial_map(cfg.seids["cardsn"])
        try:
            atr = await se.power_on()
            await se.power_off()
            for prefix, aid in load_atr_map(cfg.seids["atr"]):
                if atr.startswith(prefix):
                    sn = await card_serial(se, aid)
                    return by_card.get(sn) if sn else None
        except RacsError as err:
            log.warning("%s: no card serial: %s", se.name, err.reason)
    return None


async def build_registry(cfg: RacsConfig) -> Registry:
    registry = Registry()
    for number, spec in enumerate(cfg.se, 1):
        where = f"{cfg.path} [[se]] #{number}"
        se: SecureElement
        if spec.get("backend", "inprocess") == "pcsc":
            se = PcscCard(str(spec.get("reader", "")))
        else:
            applet = import_applet(str(spec.get("applet", "")), where)
            serial = spec.get("serial")
            se = InProcessCard(applet, name=f"in-process #{number}", serial=serial,
                               offload=bool(spec.get("offload", True)))  # fmt: skip
        seid = spec.get("seid") or await _mapped_seid(se, cfg)
        if not seid:
            raise ConfigError(f"{where}: no 'seid' and none found in the SEID files")
        try:
            registry.add(Slot(str(seid), se))
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from err
    if "readers" in cfg.seids:
        wanted = load_reader_names(cfg.seids["readers"])
        for name in list_pcsc_readers():
            if any(name.startswith(w) for w in wanted):
                card = PcscCard(name)
                seid = await _mapped_seid(card, cfg)
                if seid and seid not in registry.slots:
                    registry.add(Slot(seid, card))
                else:
                    log.warning("reader %r has no (free) SEID in the SEID files; skipped", name)
    return registry
