"""``elock-keyserver``: run the key server and administer it.

``serve`` runs the API (uvicorn) with its background worker, ``migrate``
brings the database to this code's schema, ``token`` makes, lists and revokes
API tokens, ``master-key`` prints a fresh master key.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from key_provisioner.core.config import CONFIG_ENV, Settings, load_settings
from key_provisioner.core.crypto import MasterKey
from key_provisioner.core.errors import DomainError, KeyServerError
from key_provisioner.db.engine import make_engine, make_sessions

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=LOG_FORMAT,
    )
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
    create.set_defaults(func=_token_create)
    token.add_parser("list", help="list tokens (never the tokens themselves)").set_defaults(
        func=_token_list
    )
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


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from key_provisioner.api.main import check_settings

    settings = _settings(args)
    # Load here, once, everything each server process loads. With --workers above 1 a
    # process that fails to start is restarted by uvicorn's parent, which keeps running:
    # a bad [push] file would look like a running service, with a traceback per attempt.
    check_settings(settings)
    if args.config is not None:  # uvicorn's worker processes load settings themselves
        os.environ[CONFIG_ENV] = str(args.config.resolve())
    uvicorn.run(
        "key_provisioner.api.main:app_from_env",
        factory=True,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,  # uvicorn logs the real one
        workers=args.workers,
        log_level="debug" if args.verbose else "info",
        log_config=_log_config(args.verbose),
        # Locks ping on /sync/lock themselves (and measure the clock with it); uvicorn's own
        # protocol pings would close a busy lock's connection after 20 s without a pong.
        ws_ping_interval=None,
    )
    return 0


def _log_config(verbose: bool) -> dict[str, Any]:
    """uvicorn's logging plus ours, applied by uvicorn in every worker process.

    ``basicConfig`` in ``main`` only reaches this process; with ``--workers``
    the worker's push and revocation lines would be lost.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["elock"] = {"format": LOG_FORMAT}
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
        row, token = tokens.create(session, tokens.Role(args.role), args.name)
    print(token)
    print(f"token {row.id} ({row.role}) created; it is shown only this once", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from key_provisioner.services import tokens

    with make_sessions(make_engine(_settings(args).database_url))() as session:
        for row in tokens.list_tokens(session):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            print(f"{row.id}  {row.role:8} {state:18} {row.name}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from key_provisioner.services import tokens

    with make_sessions(make_engine(_settings(args).database_url))() as session:
        row = tokens.revoke(session, args.id)
    print(f"token {row.id} revoked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
