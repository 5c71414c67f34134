"""The docs against the code: when a doc drifts from what the code does, a test here fails.

- ``docs/configuration.md``: its "complete example" TOML blocks load with the real loaders
  and together use every key; its key tables list exactly the keys each loader accepts, with
  the defaults the loaders use and the right environment variables; every command-line option
  of every installed command is described in that command's section.
- ``docs/operations.md``: the scripts it gives run against the real code; its "Monitoring"
  tables list exactly the metrics the code exports and the alerts the shipped rules define.
- ``deploy/config/``: the example files load with the real loaders.
- ``README.md`` and ``docs/*.md``: every relative link points to a file that exists (and to a
  heading that exists, for a ``#fragment``); repository paths in the docs this suite owns exist.

What the loaders accept is read from the code (dataclasses, the loaders' key tables, the
argparse parsers, ``pyproject.toml``), never from a list kept here.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib
import json
import re
import stat
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import key_provisioner.core.config as keyserver_config
import lock_server.config as lock_config
import racs.config as racs_config
from elock_common import LockSecret, pki
from elock_common.pki_profile import make_ca
from key_provisioner.core.crypto import MasterKey
from key_provisioner.core.errors import ConfigError as KeyServerConfigError
from lock_server.errors import LockConfigError
from lock_server.store import LockStore
from racs.errors import ConfigError as RacsConfigError

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
OPERATIONS = DOCS / "operations.md"
# The docs this suite owns; their repository paths are checked too.
OWNED = [CONFIGURATION, OPERATIONS, DOCS / "deploy.md", DOCS / "architecture.md"]
ALL_DOCS = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


# -- Markdown ----------------------------------------------------------------------------


def _outside_fences(text: str) -> Iterator[tuple[int, str]]:
    """(index, line) of every line that is not inside a fenced code block."""
    fenced = False
    for number, line in enumerate(text.splitlines()):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(line index, level, title) of every heading outside code blocks."""
    found = []
    for number, line in _outside_fences(text):
        match = re.match(r"(#{1,6}) +(.*?) *#*$", line)
        if match:
            found.append((number, len(match.group(1)), match.group(2).strip()))
    return found


def section(text: str, title: str, level: int) -> str:
    """The text under the heading ``title`` (exactly) of ``level``, up to the next one as high."""
    lines = text.splitlines()
    heads = _headings(text)
    for i, (number, lvl, name) in enumerate(heads):
        if lvl == level and name == title:
            end = next((n for n, lv, _ in heads[i + 1 :] if lv <= level), len(lines))
            return "\n".join(lines[number + 1 : end])
    raise AssertionError(f"no heading {'#' * level} {title}")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every table outside code blocks, as rows keyed by the header cells."""
    found: list[list[dict[str, str]]] = []
    block: list[str] = []
    for _, line in [*_outside_fences(text), (-1, "")]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and re.fullmatch(r"[\s|:-]+", block[1]):
            header = _cells(block[0])
            found.append([dict(zip(header, _cells(row), strict=False)) for row in block[2:]])
        block = []
    return found


def _code(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def key_rows(text: str) -> dict[str, dict[str, str]]:
    """The rows of the key tables (those with a ``key`` column), by key name."""
    rows: dict[str, dict[str, str]] = {}
    for table in tables(text):
        for row in table:
            if "key" in row:
                names = _code(row["key"])
                assert len(names) == 1, f"a key cell names one key: {row['key']!r}"
                rows[names[0]] = row
    return rows


def marked_blocks(text: str, marker: str) -> list[tuple[str, str]]:
    """(name, body) of each fenced block right after ``<!-- marker: name -->``."""
    pattern = rf"<!-- {re.escape(marker)}: (\S+) -->\n```[\w-]*\n(.*?)\n```"
    return re.findall(pattern, text, flags=re.DOTALL)


# -- the loaders, read from the code ------------------------------------------------------


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _toml(raw: dict[str, dict[str, Any]]) -> str:
    out = []
    for table, values in raw.items():
        out.append(f"[{table}]")
        out += [f"{key} = {_literal(value)}" for key, value in values.items()]
    return "\n".join(out) + "\n"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)


@dataclass
class Loader:
    """One configuration file: its doc section, the keys its loader accepts, how to load it."""

    name: str  # the file, as the doc's "complete example" markers name it
    heading: str  # its level-2 heading in configuration.md
    keys: dict[str, set[str]]  # the level-3 heading of each table -> the keys accepted there
    error: type[Exception]
    load: Callable[[Path, dict[str, dict[str, Any]]], Any]  # (directory, raw) -> result
    # The smallest valid raw config for checking one key of one table.
    base: Callable[[Path, str, str], dict[str, dict[str, Any]]]
    value: Callable[[Any, str, str], Any]  # (result, table, key) -> what the loader made
    checked_defaults: set[str]  # tables whose defaults the loader itself applies


def _lock_load(directory: Path, raw: dict[str, dict[str, Any]]) -> Any:
    path = directory / "lock.toml"
    path.write_text(_toml(raw))
    return lock_config.load_config(path)


LOCK = Loader(
    name="lock.toml",
    heading="lock.toml (the lock)",
    keys={
        "`[lock]`": _field_names(lock_config.LockConfig) - {"relay", "audit", "metrics", "sync"},
        "`[relay]`": _field_names(lock_config.RelayConfig),
        "`[audit]`": _field_names(lock_config.AuditConfig),
        "`[metrics]`": _field_names(lock_config.MetricsConfig),
        "`[sync]`": _field_names(lock_config.SyncConfig),
    },
    error=LockConfigError,
    load=_lock_load,
    base=lambda directory, table, key: (
        {"lock": {"name": "front-door"}}
        | (
            {"sync": {"url": "wss://keys.example.org/sync/lock", "lock_id": str(uuid.UUID(int=1))}}
            if table == "`[sync]`"
            else {}
        )
    ),
    value=lambda cfg, table, key: getattr(
        {
            "`[relay]`": cfg.relay,
            "`[audit]`": cfg.audit,
            "`[metrics]`": cfg.metrics,
            "`[sync]`": cfg.sync,
        }.get(table, cfg),
        key,
    ),
    checked_defaults={"`[lock]`", "`[relay]`", "`[audit]`", "`[metrics]`", "`[sync]`"},
)

MASTER_KEY = MasterKey.generate().to_text()
PUSH_FILES = keyserver_config.PUSH_FILES


def _keyserver_load(directory: Path, raw: dict[str, dict[str, Any]]) -> Any:
    path = directory / "keyserver.toml"
    path.write_text(_toml(raw))
    return keyserver_config.load_settings(path, {keyserver_config.MASTER_KEY_ENV: MASTER_KEY})


def _keyserver_base(directory: Path, table: str, key: str) -> dict[str, dict[str, Any]]:
    """With [push], all six files: they go together (none of them is pushing disabled)."""
    if table != "`[push]`" or key in PUSH_FILES:
        return {}
    for name in PUSH_FILES:
        (directory / f"{name}.pem").touch()
    return {"push": {name: f"{name}.pem" for name in PUSH_FILES}}


def _keyserver_value(settings: Any, table: str, key: str) -> Any:
    part = {
        "`[keyserver]`": settings,
        "`[worker]`": settings.worker,
        "`[push]`": settings.push,
        "`[sync]`": settings.sync,
    }
    return getattr(part[table], key)


KEYSERVER = Loader(
    name="keyserver.toml",
    heading="keyserver.toml and the environment (the key server)",
    keys={
        "`[keyserver]`": set(keyserver_config._SERVER_FIELDS),
        "`[worker]`": set(keyserver_config._WORKER_FIELDS),
        "`[push]`": set(keyserver_config._PUSH_FIELDS),
        "`[sync]`": set(keyserver_config._SYNC_FIELDS),
    },
    error=KeyServerConfigError,
    load=_keyserver_load,
    base=_keyserver_base,
    value=_keyserver_value,
    checked_defaults={"`[keyserver]`", "`[worker]`", "`[push]`", "`[sync]`"},
)


def _racs_load(directory: Path, raw: dict[str, dict[str, Any]]) -> Any:
    path = directory / "racs.toml"
    path.write_text(_toml(raw))
    return racs_config.load_config(path)


def _racs_base(directory: Path, table: str, key: str) -> dict[str, dict[str, Any]]:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (directory / name).touch()
    (directory / "users.txt").write_text("keyserver 1 vcard\n")
    return {
        "server": {"cert": "cert.pem", "key": "key.pem", "client_ca": "ca.pem"},
        "access": {"users": "users.txt"},
    }


def _racs_value(cfg: Any, table: str, key: str) -> Any:
    if table == "`[limits]`":
        return getattr(cfg.limits, key)
    if table == "`[access]`":
        if key == "filter_default":
            return "allow" if cfg.policy.filter_default_allow else "deny"
        return getattr(cfg.policy, key)
    if table == "`[metrics]`":
        return getattr(cfg, f"metrics_{key}")
    return getattr(cfg, key)


RACS = Loader(
    name="racs.toml",
    heading="racs.toml (a RACS server)",
    keys={
        **{f"`[{name}]`": set(keys) for name, keys in racs_config._SECTIONS.items()},
        "`[[se]]`": set(racs_config._SE_KEYS),
    },
    error=RacsConfigError,
    load=_racs_load,
    base=_racs_base,
    value=_racs_value,
    # [[se]] entries are read when the card registry is built, not by load_config.
    checked_defaults={"`[server]`", "`[limits]`", "`[access]`", "`[seids]`", "`[metrics]`"},
)

LOADERS = [LOCK, KEYSERVER, RACS]
TABLES = [(loader, table) for loader in LOADERS for table in loader.keys]


def _table_ids(item: tuple[Loader, str]) -> str:
    return f"{item[0].name}{item[1].strip('`')}"


def _config_doc() -> str:
    return CONFIGURATION.read_text(encoding="utf-8")


def _rows(loader: Loader, table: str) -> dict[str, dict[str, str]]:
    return key_rows(section(section(_config_doc(), loader.heading, 2), table, 3))


# -- configuration.md: the key tables -----------------------------------------------------


@pytest.mark.parametrize("item", TABLES, ids=[_table_ids(t) for t in TABLES])
def test_key_table_lists_exactly_the_accepted_keys(item: tuple[Loader, str]) -> None:
    loader, table = item
    documented = set(_rows(loader, table))
    accepted = loader.keys[table]
    assert documented == accepted, (
        f"{loader.name} {table}: not documented {sorted(accepted - documented)},"
        f" documented but not accepted {sorted(documented - accepted)}"
    )


# The words of the ``type`` column, as the TOML values they stand for.
TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "path": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def _default_cases() -> list[tuple[Loader, str, str, dict[str, str]]]:
    cases = []
    for loader, table in TABLES:
        if table in loader.checked_defaults:
            for key, row in _rows(loader, table).items():
                cases.append((loader, table, key, row))
    return cases


DEFAULTS = _default_cases()


@pytest.mark.parametrize(
    "case", DEFAULTS, ids=[f"{c[0].name}{c[1].strip('`')}.{c[2]}" for c in DEFAULTS]
)
def test_documented_default_is_the_loaders(
    case: tuple[Loader, str, str, dict[str, str]], tmp_path: Path
) -> None:
    """A literal default is of the documented type, the loader accepts it, and it is what the
    loader uses without the key. ``required``: the loader refuses a file without the key.
    ``none``: it accepts one.
    """
    loader, table, key, row = case
    cell = row["default"]
    assert row["type"] in TYPES, f"{key}: unknown type {row['type']!r}"
    base = loader.base(tmp_path, table, key)
    toml_table = table.strip("`[]")
    without = {t: {k: v for k, v in values.items() if k != key} for t, values in base.items()}
    if cell == "required":
        with pytest.raises(loader.error):
            loader.load(tmp_path, without)
        return
    if cell == "none":
        loader.load(tmp_path, without)
        return
    literals = _code(cell)
    assert len(literals) == 1, f"{key}: the default cell is `literal`, required or none: {cell!r}"
    documented = tomllib.loads(f"v = {literals[0]}")["v"]
    kind = TYPES[row["type"]]
    is_bool = isinstance(documented, bool)
    assert isinstance(documented, kind) and (is_bool == (kind is bool)), (
        f"{key}: default {documented!r} is not a TOML {row['type']}"
    )
    given = {**without, toml_table: {**without.get(toml_table, {}), key: documented}}
    implied = loader.value(loader.load(tmp_path, without), table, key)
    explicit = loader.value(loader.load(tmp_path, given), table, key)
    assert explicit == implied, f"{key}: documented default {documented!r}, loader uses {implied!r}"


# -- configuration.md: the key server's environment ----------------------------------------


ENV_PREFIXES = {
    "`[keyserver]`": keyserver_config.ENV_PREFIX,
    "`[worker]`": keyserver_config.ENV_PREFIX + "WORKER_",
    "`[push]`": keyserver_config.ENV_PREFIX + "PUSH_",
}


def test_every_key_server_setting_names_its_environment_variable() -> None:
    for table, prefix in ENV_PREFIXES.items():
        for key, row in _rows(KEYSERVER, table).items():
            assert prefix + key.upper() in _code(row["environment"]), f"{table} {key}"


def test_the_master_key_and_config_variables_are_documented() -> None:
    doc = _config_doc()
    master = keyserver_config.MASTER_KEY_ENV
    for name in (master, master + "_FILE", keyserver_config.CONFIG_ENV):
        assert f"`{name}`" in doc, name


def _documented_variables() -> list[str]:
    return sorted(set(re.findall(r"\bELOCK_[A-Z0-9_]*[A-Z0-9]\b", _config_doc())))


@pytest.mark.parametrize("variable", _documented_variables())
def test_documented_variable_is_read_by_the_loader(variable: str, tmp_path: Path) -> None:
    """Set to nonsense, a variable the loader reads is refused or changes the settings."""
    (tmp_path / "master.key").write_text(MASTER_KEY)
    raw = _keyserver_base(tmp_path, "`[push]`", "timeout")
    raw["keyserver"] = {"master_key_file": "master.key"}
    config = tmp_path / "keyserver.toml"
    config.write_text(_toml(raw))
    env = {keyserver_config.CONFIG_ENV: str(config)}
    baseline = repr(keyserver_config.load_settings(None, env))
    try:
        changed = repr(keyserver_config.load_settings(None, {**env, variable: "nonsense"}))
    except KeyServerConfigError:
        return
    assert changed != baseline, f"{variable} is documented but the key server ignores it"


# -- configuration.md and deploy/config: complete examples ----------------------------------


def _rooted(text: str, root: Path) -> str:
    """Absolute paths in TOML strings moved under ``root``."""
    return text.replace('"sqlite:////', f'"sqlite:///{root}/').replace('"/', f'"{root}/')


def _ca_pem() -> str:
    cert, _ = make_ca("Example CA", now=time.time())
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _placeholders(raw: Any, root: Path, key: str = "") -> None:
    """Create what the loaders need to find at the paths under ``root`` the file names."""
    if isinstance(raw, dict):
        for name, value in raw.items():
            _placeholders(value, root, name)
        return
    if isinstance(raw, list):
        for value in raw:
            _placeholders(value, root, key)
        return
    if not isinstance(raw, str) or not raw.startswith(f"{root}/"):
        return
    path = Path(raw)
    if path.exists() or key == "log_apdus":
        return
    if key.endswith("_dir"):
        path.mkdir(parents=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    contents = {
        "master_key_file": MASTER_KEY,
        "secret_file": LockSecret.generate().to_text(),
        "ca_file": _ca_pem(),
    }
    path.write_text(contents.get(key, ""))
    path.chmod(0o600)  # the lock refuses a secret others can read


def _load_example(name: str, text: str, root: Path) -> Any:
    path = root / "etc" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _rooted(text, root)
    _placeholders(tomllib.loads(text), root)
    path.write_text(text)
    if name == "lock.toml":
        config = lock_config.load_config(path)
        config.load_secret()
        return config
    if name == "keyserver.toml":
        return keyserver_config.load_settings(path, {})
    if name == "racs.toml":
        return racs_config.load_config(path)
    raise AssertionError(f"no loader for a complete example named {name}")


EXAMPLES = marked_blocks(CONFIGURATION.read_text(encoding="utf-8"), "complete example")


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXAMPLES, 1)]
)
def test_complete_example_loads(example: tuple[str, str], tmp_path: Path) -> None:
    for path, body in marked_blocks(_config_doc(), "example file"):
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body + "\n")
    _load_example(*example, tmp_path)


@pytest.mark.parametrize("loader", LOADERS, ids=[loader.name for loader in LOADERS])
def test_complete_examples_use_every_key(loader: Loader) -> None:
    used: dict[str, set[str]] = {}
    for name, body in EXAMPLES:
        if name == loader.name:
            for table, values in tomllib.loads(body).items():
                if isinstance(values, dict):
                    used.setdefault(f"`[{table}]`", set()).update(values)
    assert used, f"no complete example of {loader.name}"
    for table in loader.checked_defaults:
        missing = loader.keys[table] - used.get(table, set())
        assert not missing, f"the complete {loader.name} examples never use {table} {missing}"


@pytest.mark.parametrize("name", ["lock.toml", "keyserver.toml"])
def test_deploy_config_example_loads(name: str, tmp_path: Path) -> None:
    _load_example(name, (ROOT / "deploy" / "config" / name).read_text(encoding="utf-8"), tmp_path)


# -- configuration.md: command-line options ----------------------------------------------


class _CapturedError(Exception):
    pass


def _scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(pyproject["project"]["scripts"])


def _parser(entry: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser the command's entry point builds, caught when it parses."""
    module, _, function = entry.partition(":")
    caught: list[argparse.ArgumentParser] = []

    def catch(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        caught.append(self)
        raise _CapturedError

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(_CapturedError):
        getattr(importlib.import_module(module), function)([])
    return caught[0]


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], list[str]]]:
    """(command path, option strings) of the parser and each of its subcommands."""
    options: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            options += action.option_strings
    yield path, options


@pytest.mark.parametrize("program", sorted(_scripts()))
def test_every_command_line_option_is_documented(
    program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An option is in its subcommand's table row, or in the command's text outside the table."""
    text = section(section(_config_doc(), "Command-line options", 2), f"`{program}`", 3)
    rows = {}
    for table in tables(text):
        for row in table:
            names = _code(row["command"])
            rows[names[0]] = " ".join(row.values())
    intro = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    commands = dict(_commands(_parser(_scripts()[program], monkeypatch), (program,)))
    parents = {path[:i] for path in commands for i in range(1, len(path))}
    leaves = {" ".join(path) for path in commands if path not in parents}
    assert not set(rows) - leaves, f"rows for commands that do not exist: {set(rows) - leaves}"
    for path, options in commands.items():
        command = " ".join(path)
        if command in leaves and len(path) > 1:
            assert command in rows, f"no row for `{command}`"
        where = rows.get(command, "") + "\n" + intro
        for option in options:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", where), (
                f"{command} {option} is not documented"
            )


# -- operations.md: its scripts ------------------------------------------------------------


def _script(name: str, tmp_path: Path) -> Path:
    scripts = dict(marked_blocks(OPERATIONS.read_text(encoding="utf-8"), "script"))
    assert name in scripts, f"operations.md has no script {name}"
    path = tmp_path / name
    path.write_text(scripts[name] + "\n")
    return path


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_lock_db_script(tmp_path: Path) -> None:
    script, db = _script("lock-db.py", tmp_path), tmp_path / "state" / "lock.sqlite3"
    store = LockStore(db)
    store.replace_revocations(7, ["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    for _ in range(3):
        store.audit(key_id=None, peer="p", action="open", granted=False, reason="test")

    assert _run(script, "backup", db, tmp_path / "copy.sqlite3").returncode == 0
    copy = LockStore(tmp_path / "copy.sqlite3")
    assert (copy.revocation_version, copy.revocation_count()) == (7, 2)
    copy.close()

    listed = _run(script, "revoked", db)
    assert listed.stdout.split() == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]

    assert _run(script, "forget-version", db).returncode == 0
    assert (store.revocation_version, store.revocation_count()) == (0, 2)
    assert store.replace_revocations(1, ["cccccccccccc"]) == 1  # the next push is taken

    assert _run(script, "audit-after", db, "100").returncode == 0
    assert store.audit(key_id=None, peer="p", action="open", granted=True, reason="x") == 101
    assert _run(script, "prune-audit", db, "100").returncode != 0  # `elock-lock audit prune` now
    store.close()

    fresh = tmp_path / "fresh" / "lock.sqlite3"  # a lock whose state was lost
    assert _run(script, "audit-after", fresh, "42").returncode == 0
    new_store = LockStore(fresh)
    assert new_store.audit(key_id=None, peer="p", action="open", granted=True, reason="") == 43
    new_store.close()

    wrong = _run(script, "no-such-command", db)
    assert wrong.returncode != 0 and "audit-after" in wrong.stderr


def test_renew_cert_script(tmp_path: Path) -> None:
    script, directory = _script("renew-cert.py", tmp_path), tmp_path / "pki"
    paths = pki.init_pki(
        directory,
        racs_users=("keyserver", "alice"),
        racs_server_names=("racs.example.org",),
        racs_server_ips=("192.0.2.7",),
    )
    renewals = [
        (paths.key_server, paths.key_server_ca),
        (paths.racs_server, paths.racs_ca),
        (paths.racs_users["alice"], paths.racs_ca),
    ]
    for leaf, ca in renewals:
        done = _run(script, leaf.cert.stem, ca.cert.stem, cwd=directory)
        assert done.returncode == 0, done.stderr
        old = pki.load_certificate(leaf.cert)
        new = pki.load_certificate(leaf.cert.with_name(leaf.cert.name + ".new"))
        key = pki.load_private_key(leaf.key.with_name(leaf.key.name + ".new"))
        new.verify_directly_issued_by(pki.load_certificate(ca.cert))
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert new.public_key() == key.public_key() != old.public_key()
        assert new.serial_number != old.serial_number
        for ext in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage, x509.KeyUsage):
            assert new.extensions.get_extension_for_class(ext).value == (
                old.extensions.get_extension_for_class(ext).value
            )
        assert new.subject == old.subject
        for made in (leaf.cert, leaf.key):
            mode = made.with_name(made.name + ".new").stat().st_mode
            assert stat.S_IMODE(mode) == 0o600
    client = pki.load_certificate(directory / "racs-user-alice.pem.new")
    purposes = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"


# -- operations.md: monitoring ------------------------------------------------------------


def _monitoring_rows(column: str) -> set[str]:
    text = section(OPERATIONS.read_text(encoding="utf-8"), "Monitoring", 2)
    return {_code(row[column])[0] for table in tables(text) for row in table if column in row}


def test_every_exported_metric_is_documented() -> None:
    from key_provisioner.observability import metric_names as keyserver
    from lock_server.metrics import metric_names as lock
    from racs.metrics import metric_names as racs

    exported = keyserver() | lock() | racs()
    documented = _monitoring_rows("metric")
    assert documented == exported, (
        f"not documented {sorted(exported - documented)},"
        f" documented but not exported {sorted(documented - exported)}"
    )


def test_every_shipped_alert_is_documented() -> None:
    rules = (ROOT / "deploy" / "prometheus" / "elock-rules.yml").read_text(encoding="utf-8")
    shipped = set(re.findall(r"^\s*- alert: (\w+)$", rules, flags=re.M))
    assert shipped and _monitoring_rows("alert") == shipped


# -- links and paths -----------------------------------------------------------------------


def _slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "")
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, _, title in _headings(path.read_text(encoding="utf-8")):
        slug = _slug(title)
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _prose(path: Path) -> str:
    """The file without code blocks and code spans, where link syntax means nothing."""
    lines = [line for _, line in _outside_fences(path.read_text(encoding="utf-8"))]
    return re.sub(r"`[^`\n]*`", "", "\n".join(lines))


def _links(path: Path) -> list[str]:
    text = _prose(path)
    return re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.M)


@pytest.mark.parametrize("doc", ALL_DOCS, ids=[p.name for p in ALL_DOCS])
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for link in _links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto: ...
            continue
        target, _, fragment = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(link)
        elif fragment and path.suffix == ".md" and fragment not in _anchors(path):
            broken.append(link)
    assert not broken, f"{doc.name}: broken links {broken}"


TOP_LEVEL = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}


@pytest.mark.parametrize("doc", ALL_DOCS, ids=[p.name for p in ALL_DOCS])
def test_repository_paths_exist(doc: Path) -> None:
    missing = []
    for token in re.findall(r"`([^`\s]+)`", doc.read_text(encoding="utf-8")):
        path = token.rstrip(".,:;").split("::")[0]  # a pytest node id names its file
        if "/" in path and path.split("/")[0] in TOP_LEVEL and not glob.glob(str(ROOT / path)):
            missing.append(token)
    assert not missing, f"{doc.name}: no such path {missing}"


def test_every_owned_doc_is_in_the_architecture_index() -> None:
    index = (DOCS / "architecture.md").read_text(encoding="utf-8")
    for doc in OWNED:
        if doc.name != "architecture.md":
            assert f"]({doc.name})" in index, f"architecture.md does not link {doc.name}"
