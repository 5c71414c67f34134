"""``elock-lock``: set up, run and inspect a lock.

``init`` makes a lock secret and config (or installs a key-server bundle),
``serve`` runs the lock, ``mint`` prints a key (the installer's master key, and
the way to test with standard CoAP tools), ``status`` shows what the lock holds,
``audit prune`` bounds the audit table, ``relay off`` releases the strike (the
systemd unit runs it after every exit of ``serve``, a ``kill -9`` included).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import stat
import sys
import time
from pathlib import Path
from typing import Any

from elock_common import Rights, logfmt, mint_key
from elock_common.identity import EVERY_DAY, MINUTES_PER_DAY, NO_NOT_AFTER
from lock_server import install
from lock_server.config import DEFAULT_PORT, LockConfig, load_config
from lock_server.errors import LockError
from lock_server.health import problems
from lock_server.relay import make_relay, read_simulated_state
from lock_server.store import LockStore

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logfmt.configure(args.log_format, logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args))
    except LockError as exc:
        print(f"elock-lock: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elock-lock", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log every decision")
    logfmt.add_argument(p)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="make a lock secret and config")
    init.add_argument(
        "--dir", type=Path, required=True, help="directory for lock.toml and lock.secret"
    )
    init.add_argument("--name", default="front-door")
    init.add_argument(
        "--host", help="the address it listens on (default: the bundle's, else 127.0.0.1)"
    )
    init.add_argument("--port", type=int, default=DEFAULT_PORT)
    init.add_argument(
        "--bundle", type=Path, help="lock bundle from the key server (its secret is used)"
    )
    init.add_argument("--force", action="store_true", help="replace an existing secret")
    init.set_defaults(func=_init)

    serve = sub.add_parser("serve", help="run the lock")
    serve.add_argument("--config", type=Path, required=True)
    serve.set_defaults(func=_serve)

    _add_mint(sub)

    status = sub.add_parser("status", help="show relay, revocations and recent audit rows")
    status.add_argument("--config", type=Path, required=True)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

    _add_maintenance(sub)
    return p


def _add_mint(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mint = sub.add_parser("mint", help="print a new key (identity and PSK) for this lock")
    mint.add_argument("--config", type=Path, required=True)
    mint.add_argument("--admin", action="store_true", help="add the admin right")
    mint.add_argument("--no-open", action="store_true", help="without the open right")
    mint.add_argument("--one-time", action="store_true", help="valid for one open")
    mint.add_argument("--uses", type=int, default=0, help="valid for N opens (0: unlimited)")
    mint.add_argument("--not-before", type=_when, help="ISO 8601 time or Unix seconds")
    mint.add_argument("--not-after", type=_when, help="ISO 8601 time or Unix seconds")
    mint.add_argument("--valid-for", type=_duration, help="e.g. 30m, 8h, 7d (from now)")
    mint.add_argument(
        "--weekdays", type=_weekdays, default=EVERY_DAY, help="e.g. mon-fri or sat,sun"
    )
    mint.add_argument(
        "--window",
        type=_window,
        default=(0, MINUTES_PER_DAY),
        help="e.g. 08:00-18:00 (lock time zone)",
    )
    mint.add_argument("--json", action="store_true")
    mint.set_defaults(func=_mint)


def _add_maintenance(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands an operator or the unit file runs on a stopped lock's data."""
    audit = sub.add_parser("audit", help="maintain the audit log").add_subparsers(
        required=True, metavar="ACTION"
    )
    prune = audit.add_parser(
        "prune", help="delete the oldest rows the key server holds, down to audit.max_rows"
    )
    prune.add_argument("--config", type=Path, required=True)
    prune.add_argument(
        "--max-rows", type=int, help="keep at most this many rows (default: audit.max_rows)"
    )
    prune.set_defaults(func=_audit_prune)

    relay = sub.add_parser("relay", help="drive the relay directly").add_subparsers(
        required=True, metavar="ACTION"
    )
    off = relay.add_parser("off", help="release the strike (the unit's ExecStopPost)")
    off.add_argument("--config", type=Path, required=True)
    off.set_defaults(func=_relay_off)


def _init(args: argparse.Namespace) -> int:
    if args.bundle:
        files = install.from_bundle(args.bundle, args.host)
    else:
        files = install.fresh(args.name, args.host or "127.0.0.1", args.port)
    config_path = install.install(files, args.dir, force=args.force)
    secret_path = args.dir / install.SECRET_FILE
    mode = stat.S_IMODE(secret_path.stat().st_mode)
    print(f"lock {files.name!r}: config {config_path}, secret {secret_path} (mode {mode:o})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from lock_server.server import serve  # aiocoap only where it is needed

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("lock_server").setLevel(logging.INFO)
    asyncio.run(serve(load_config(args.config)))
    return 0


def _mint(args: argparse.Namespace) -> int:
    config: LockConfig = load_config(args.config)
    rights = Rights(0) if args.no_open else Rights.OPEN
    if args.admin:
        rights |= Rights.ADMIN
    not_before, not_after = _validity(args, now=int(time.time()))
    try:
        claims, key = mint_key(
            config.load_secret(),
            rights=rights,
            not_before=not_before,
            not_after=not_after,
            weekdays=args.weekdays,
            window_start=args.window[0],
            window_end=args.window[1],
            max_uses=1 if args.one_time else args.uses,
        )
    except ValueError as exc:
        raise LockError(f"cannot mint that key: {exc}") from None
    out = {
        "identity": key.identity.decode(),
        "psk": key.psk.decode(),
        "key_id": claims.key_id_hex,
        "uri": f"coaps://{_hostport(config)}/lock",
        "not_before": not_before,
        "not_after": None if not_after == NO_NOT_AFTER else not_after,
        "valid": _describe_validity(not_before, not_after),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"key id:   {out['key_id']}\nidentity: {out['identity']}\npsk:      {out['psk']}")
        print(f"valid:    {out['valid']}")
        print(
            "try:      coap-client-openssl -m post"
            f" -u '{out['identity']}' -k '{out['psk']}' {out['uri']}"
        )
    return 0


def _validity(args: argparse.Namespace, *, now: int) -> tuple[int, int]:
    """(not_before, not_after) from the options; a key that is dead on arrival, or
    a zero duration that would read as "no end", is refused."""
    if args.valid_for is not None and args.not_after is not None:
        raise LockError("give --valid-for or --not-after, not both")
    not_before = args.not_before if args.not_before is not None else 0
    if args.valid_for is not None:
        if args.valid_for <= 0:
            raise LockError("--valid-for must be longer than zero")
        return (not_before or now), now + args.valid_for
    if args.not_after is None:
        return not_before, NO_NOT_AFTER
    if args.not_after <= now:
        raise LockError(f"--not-after {_iso(args.not_after)} is in the past")
    if args.not_after <= not_before:
        raise LockError("--not-after must be later than --not-before")
    return not_before, args.not_after


def _describe_validity(not_before: int, not_after: int) -> str:
    start = f"from {_iso(not_before)}" if not_before else "from now"
    end = "with no end" if not_after == NO_NOT_AFTER else f"until {_iso(not_after)}"
    return f"{start} {end}"


def _iso(moment: int) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _audit_prune(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    limit = config.audit.max_rows if args.max_rows is None else args.max_rows
    if limit < 0:
        raise LockError("--max-rows must be 0 or more")
    store = LockStore(config.data_dir / "lock.sqlite3")
    try:
        result = store.prune_audit(limit)
        watermark = store.audit_delivered_through()
    finally:
        store.close()
    print(f"audit: {result.deleted} row(s) deleted, {result.kept} kept "
          f"(limit {limit}; key server holds rows up to {watermark})")  # fmt: skip
    if result.kept > limit:
        print(f"audit: {result.undelivered} row(s) not yet confirmed by the key server are kept "
              "beyond the limit", file=sys.stderr)  # fmt: skip
    return 0


def _relay_off(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    relay = make_relay(config.relay, config.data_dir)  # every backend starts released
    # release(), not close(): close() would hand the GPIO pin back as a floating input;
    # the pin stays an output driven to its off level after this process exits.
    relay.release()
    print("relay off")
    return 0


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = LockStore(config.data_dir / "lock.sqlite3")
    try:
        recent = store.audit_rows(0, 500)[-10:]
        info: dict[str, Any] = {
            "name": config.name,
            "endpoint": f"coaps://{_hostport(config)}",
            "relay": ("on" if read_simulated_state(config.data_dir) else "off")
            if config.relay.backend == "simulated"
            else "gpio",
            "revocation_version": store.revocation_version,
            "revoked_keys": store.revocation_count(),
            "audit_rows": store.audit_row_count(),
            "audit_delivered_through": store.audit_delivered_through(),
            "recent_audit": [r.as_json() for r in recent],
            "sync": _sync_info(config, store),
        }
    finally:
        store.close()
    info["problems"] = problems(config)
    info["healthy"] = not info["problems"]
    status = 0 if info["healthy"] else 1  # for systemd and monitoring agents
    if args.json:
        print(json.dumps(info, indent=2))
        return status
    for name in (
        "name", "endpoint", "relay", "revocation_version", "revoked_keys", "audit_rows",
        "audit_delivered_through",
    ):  # fmt: skip
        print(f"{name.replace('_', ' ')}: {info[name]}")
    print(f"sync: {_sync_line(info['sync'])}")
    for row in recent:
        when = dt.datetime.fromtimestamp(row.ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"  {when} {row.outcome:8} {row.action:10} key {row.key_id} {row.peer}: {row.reason}")
    for problem in info["problems"]:
        print(f"problem: {problem}")
    return status


def _sync_info(config: LockConfig, store: LockStore) -> dict[str, Any] | None:
    if config.sync is None:
        return None
    from lock_server.sync_client import read_status

    info: dict[str, Any] = {"url": config.sync.url, "connected": False, "last_sync_at": None,
                            "clock_offset": None, "last_error": None}  # fmt: skip
    info |= read_status(config.data_dir) or {}
    info["revocation_version"] = store.revocation_version
    info["audit_delivered_through"] = store.audit_delivered_through()
    return info


def _sync_line(sync: dict[str, Any] | None) -> str:
    if sync is None:
        return "none (no [sync] in the config)"
    when = sync.get("last_sync_at")
    last = (
        "never"
        if not isinstance(when, int | float)
        else dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    )
    state = "connected" if sync.get("connected") else "OFFLINE, working with the last list"
    offset = sync.get("clock_offset")
    clock = "unknown" if offset is None else f"{offset:+.3f} s (key server minus lock)"
    error = f"; last error: {sync['last_error']}" if sync.get("last_error") else ""
    return (
        f"{state} to {sync['url']}; last sync {last}; revocation version"
        f" {sync['revocation_version']}; clock offset {clock}{error}"
    )


def _hostport(config: LockConfig) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"{host}:{config.port}"


def _when(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time or Unix seconds"
        ) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp())


def _duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: use a number and s, m, h or d")
    seconds = int(text[:-1]) * units[text[-1]]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a key must be valid for longer than zero")
    return seconds


def _weekdays(text: str) -> int:
    mask = 0
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise argparse.ArgumentTypeError(f"{text!r}: use days like mon-fri or sat,sun")
        a, b = _DAYS.index(first), _DAYS.index(last or first)
        for day in range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]:
            mask |= 1 << day
    return mask


def _window(text: str) -> tuple[int, int]:
    try:
        start, end = (dt.time.fromisoformat(t) for t in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use HH:MM-HH:MM") from None
    end_minute = end.hour * 60 + end.minute or MINUTES_PER_DAY
    return start.hour * 60 + start.minute, end_minute


if __name__ == "__main__":
    sys.exit(main())
