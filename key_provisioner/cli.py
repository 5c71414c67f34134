"""``elock-keyserver``: run the key server and administer it.

``serve`` runs the API (uvicorn) with its background worker, ``migrate``
brings the database to this code's schema, ``token`` makes (optionally
expiring), lists (with their last use) and revokes API tokens,
``master-key`` prints a fresh master key.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from elock_common import logfmt
from key_provisioner.core.config import CONFIG_ENV, Settings, load_settings
from key_provisioner.core.crypto import MasterKey
from key_provisioner.core.errors import DomainError, KeyServerError
from key_provisioner.db.engine import make_engine, make_sessions

LOG_FORMAT = logfmt.TEXT_FORMAT
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logfmt.configure(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except DomainError as exc:
        print(f"elock-keyserver: {exc.detail}", file=sys.stderr)
        return 2
    except KeyServerError as exc:
        print(f"elock-keyserver: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elock-keyserver", description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, help=f"TOML settings file (or ${CONFIG_ENV})")
    p.add_argument("-v", "--verbose", action="store_true")
    logfmt.add_argument(p)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the admin API and the background worker")
    serve.add_argument("--host", help="override keyserver.host")
    serve.add_argument("--port", type=_port, help="override keyserver.port (0: any free port)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database schema")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=_migrate)

    token = sub.add_parser("token", help="API tokens").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = token.add_parser("create", help="make a token and print it (once)")
    create.add_argument("--role", choices=["admin", "auditor"], required=True)
    create.add_argument("--name", default="", help="who or what uses it")
    create.add_argument(
        "--expires",
        type=_expiry,
        metavar="WHEN",
        help=(
            "when the token stops working: a duration from now (90d, 12h, 1w2d, 30m; units "
            "w d h m s) or a UTC date or time (2027-06-30: through that day; "
            "2027-06-30T18:00, or with an offset) [never]"
        ),
    )
    create.set_defaults(func=_token_create)
    token.add_parser(
        "list", help="list tokens with state, expiry and last use (never the tokens themselves)"
    ).set_defaults(func=_token_list)
    revoke = token.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=uuid.UUID)
    revoke.set_defaults(func=_token_revoke)

    sub.add_parser("master-key", help="print a new random master key").set_defaults(
        func=lambda args: print(MasterKey.generate().to_text()) or 0
    )
    return p


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 (any free port) to 65535, not {text!r}")
    return port


_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = ("weeks", "days", "hours", "minutes", "seconds")


def _expiry(text: str) -> dt.datetime:
    """``--expires``: a duration from now, or a date (through that day, UTC) or a time.

    Zero, negative and past values are refused: a token that never works is a typo.
    """
    now = dt.datetime.now(dt.UTC)
    match = _DURATION.fullmatch(text)
    try:
        if text and match:
            amounts = {u: int(n) for u, n in zip(_UNITS, match.groups(), strict=True) if n}
            length = dt.timedelta(**amounts)
            if length <= dt.timedelta(0):
                raise argparse.ArgumentTypeError(f"{text!r} is no time at all")
            return now + length
        if len(text) == 10:  # a date alone: the token works through that day
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(days=1)
        else:
            moment = dt.datetime.fromisoformat(text)
            moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is too far in the future") from None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (90d, 12h, 1w2d) nor a date or time (2027-06-30)"
        ) from None
    if moment <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is in the past")
    return moment


def _serve(args: argparse.Namespace) -> int:
    with metrics_dir():  # before anything imports prometheus_client
        return _run_server(args)


def _run_server(args: argparse.Namespace) -> int:
    import uvicorn

    from elock_common import card_sync, lock_sync
    from key_provisioner.api.main import check_settings

    settings = _settings(args)
    # Load here, once, everything each server process loads. With --workers above 1 a
    # process that fails to start is restarted by uvicorn's parent, which keeps running:
    # a bad [push] file would look like a running service, with a traceback per attempt.
    check_settings(settings)
    # Twice the larger format's limit: an oversized frame up to it still gets the format's
    # own refusal (a reason the lock logs); beyond it the WebSocket layer closes with 1009.
    ws_max_size = 2 * max(lock_sync.MAX_MESSAGE, card_sync.MAX_MESSAGE)
    if args.config is not None:  # uvicorn's worker processes load settings themselves
        os.environ[CONFIG_ENV] = str(args.config.resolve())
    uvicorn.run(
        "key_provisioner.api.main:app_from_env",
        factory=True,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,  # uvicorn logs the real one
        workers=args.workers,
        log_level="debug" if args.verbose else "info",
        log_config=_log_config(args.verbose, args.log_format),
        # Locks ping on /sync/lock themselves (and measure the clock with it); uvicorn's own
        # protocol pings would close a busy lock's connection after 20 s without a pong.
        ws_ping_interval=None,
        # uvicorn reads a frame of up to 16 MiB into memory before the application sees it;
        # no sync frame may exceed MAX_MESSAGE, so anonymous peers (up to max_handshakes on
        # /sync/lock, any host on the card sync) cannot make it hold more than this each.
        ws_max_size=ws_max_size,
    )
    return 0


@contextlib.contextmanager
def metrics_dir() -> Iterator[Path]:
    """The directory where every uvicorn worker keeps its metric values (multiprocess mode).

    The operator's ``PROMETHEUS_MULTIPROC_DIR`` if set, emptied first (values
    of an earlier run would add to this one's); otherwise a private directory
    removed when the server stops.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="elock-keyserver-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    # uvicorn re-raises SIGTERM once it has stopped; as an exception it unwinds to here.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield path
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _log_config(verbose: bool, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging plus ours, applied by uvicorn in every worker process.

    ``basicConfig`` in ``main`` only reaches this process; with ``--workers``
    the worker's push and revocation lines would be lost.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["elock"] = {"format": LOG_FORMAT}
    # One line per request: uvicorn's access line in text, ours (with the route template,
    # the request id and the time taken) in JSON; uvicorn's other lines as JSON too.
    access = {"handlers": ["elock"], "level": "INFO", "propagate": False}
    if log_format == "json":
        for name in ("elock", "default", "access"):
            config["formatters"][name] = {"()": "elock_common.logfmt.JsonFormatter"}
        config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    else:
        access["level"] = "WARNING"
    config["loggers"]["key_provisioner.access"] = access
    config["handlers"]["elock"] = {
        "class": "logging.StreamHandler",
        "formatter": "elock",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["key_provisioner"] = {
        "handlers": ["elock"],
        "level": "DEBUG" if verbose else "INFO",
        "propagate": False,
    }
    return config


def _migrate(args: argparse.Namespace) -> int:
    from key_provisioner.db.migrate import current_revision, upgrade

    engine = make_engine(_settings(args).database_url)
    upgrade(engine, args.revision)
    print(f"database at migration {current_revision(engine)}")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from key_provisioner.services import tokens

    with make_sessions(make_engine(_settings(args).database_url))() as session:
        row, token = tokens.create(
            session, tokens.Role(args.role), args.name, expires_at=args.expires
        )
    print(token)
    expiry = f"expires {_when(row.expires_at)}" if row.expires_at else "never expires"
    print(
        f"token {row.id} ({row.role}, {expiry}) created; it is shown only this once",
        file=sys.stderr,
    )
    return 0


def _token_list(args: argparse.Namespace) -> int:
    """One line per token: id, role, state, expiry, last use (time and client), name."""
    from key_provisioner.db.base import utcnow
    from key_provisioner.services import tokens

    now = utcnow()
    with make_sessions(make_engine(_settings(args).database_url))() as session:
        for row in tokens.list_tokens(session):
            state = tokens.state(row, now)
            if row.revoked_at is not None:
                state += f" {row.revoked_at:%Y-%m-%d}"
            expires = _when(row.expires_at) if row.expires_at else "never"
            used = "never"
            if row.last_used_at is not None:
                used = f"{_when(row.last_used_at)} from {row.last_used_from or 'unknown'}"
            print(
                f"{row.id}  {row.role:8} {state:18} expires {expires:17}  "
                f"last used {used}  {row.name}"
            )
    return 0


def _when(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%MZ}"


def _token_revoke(args: argparse.Namespace) -> int:
    from key_provisioner.services import tokens

    with make_sessions(make_engine(_settings(args).database_url))() as session:
        row = tokens.revoke(session, args.id)
    print(f"token {row.id} revoked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
