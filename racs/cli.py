"""``racs-server --config racs.toml``: run a RACS server until SIGINT or SIGTERM.

Start-up problems (a bad racs.toml, a missing certificate, a port in use)
print one line naming the file or setting at fault and exit with status 2,
never a traceback: whoever deploys the server must see what to fix. On a
signal the server ends every session, which powers off and unlocks its SEs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from elock_common import logfmt
from racs import metrics
from racs.apdu_log import ApduLog
from racs.config import RacsConfig, build_registry, load_config
from racs.errors import ConfigError
from racs.server import RacsServer, server_ssl_context
from racs.service import RacsService

log = logging.getLogger("racs")


async def _run(cfg: RacsConfig, ready: str | None) -> None:
    try:
        ctx = server_ssl_context(cfg.cert, cfg.key, cfg.client_ca)
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(f"{cfg.path} [server]: cannot load certificate or key: {err}") from err
    registry = await build_registry(cfg)
    try:
        apdu_log = ApduLog(cfg.log_apdus) if cfg.log_apdus is not None else None
    except OSError as err:
        raise ConfigError(f"{cfg.path} [server]: cannot open log_apdus: {err}") from err
    server = RacsServer(
        RacsService(registry, cfg.policy, apdu_log, style=cfg.style),
        ctx,
        host=cfg.host,
        port=cfg.port,
        limits=cfg.limits,
        idle_timeout=cfg.idle_timeout,
        max_sessions=cfg.max_sessions,
        max_user_sessions=cfg.max_sessions_per_user,
    )
    try:
        await server.start()
    except OSError as err:
        raise ConfigError(
            f"{cfg.path} [server]: cannot listen on {cfg.host}:{cfg.port}: {err}"
        ) from err
    exporter = _metrics(cfg, server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving %d secure element(s): %s", len(registry.slots), " ".join(registry.seids()))
    if ready:
        print(ready.format(port=server.port), flush=True)
    await stop.wait()
    log.info("shutting down")
    await server.close()
    if apdu_log is not None:
        apdu_log.close()
    if exporter is not None:
        exporter.close()


def _metrics(cfg: RacsConfig, server: RacsServer) -> metrics.Exporter | None:
    if not cfg.metrics_enabled:
        return None
    try:
        return metrics.Exporter(cfg.metrics_host, cfg.metrics_port, lambda: server.session_count)
    except OSError as err:
        raise ConfigError(
            f"{cfg.path} [metrics]: cannot listen on {cfg.metrics_host}:{cfg.metrics_port}: {err}"
        ) from err


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="racs-server", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="path of racs.toml")
    parser.add_argument("--port", type=int, help="override [server] port (0: any free port)")
    parser.add_argument(
        "--log-apdus", type=Path, metavar="FILE", help="append every card APDU to FILE (audit)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    logfmt.add_argument(parser)
    parser.add_argument(
        "--ready-line",
        metavar="TEXT",
        help="print TEXT once listening; {port} becomes the port (for scripts and tests)",
    )
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logfmt.configure(args.log_format, level)
    try:
        cfg = load_config(args.config)
        if args.port is not None:
            cfg.port = args.port
        if args.log_apdus is not None:
            cfg.log_apdus = args.log_apdus
        asyncio.run(_run(cfg, args.ready_line))
    except ConfigError as err:
        print(f"racs-server: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
