"""The RACS server's Prometheus metrics, on its own opt-in listener (``[metrics]``).

What an operator of a reader farm asks: how many sessions are open, how many
commands and APDUs succeed, why the refused ones were refused (certificate,
access table, APDU filter, card busy) and how long a card takes to answer.
The server calls :func:`observed` around each command it executes (one line
in ``racs.server``); sessions are read from the server when scraped.

Labels are bounded: a command name, an error class, a cause from a fixed
list. Never a user (CN), a SEID or a peer address; those are in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from racs.errors import ErrorClass, InUseError, RacsError, UnauthorizedError
from racs.protocol import Apdu, RacsCommand

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
COMMANDS = Counter(
    "racs_commands",
    "RACS commands executed, by command and outcome (ok, or the error class).",
    ["command", "outcome"],
    registry=REGISTRY,
)
APDUS = Counter(
    "racs_apdus",
    "APDU commands, by outcome: sw_ok (90xx, 61xx), sw_error (any other status word),"
    " refused (access or busy), failed (the card or reader failed).",
    ["outcome"],
    registry=REGISTRY,
)
REFUSALS = Counter(
    "racs_refusals",
    "Requests refused, by cause (certificate, acl, filter, card_busy).",
    ["cause"],
    registry=REGISTRY,
)
CARD_SECONDS = Histogram(
    "racs_card_round_trip_seconds",
    "Time from an APDU command to the card's answer (chained GET RESPONSEs included).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
SESSIONS = "racs_sessions_open"


def refusal_cause(err: RacsError) -> str | None:
    """Which refusal an error is, or None when it is not a refusal."""
    if isinstance(err, InUseError):
        return "card_busy"
    if isinstance(err, UnauthorizedError):
        return "filter" if "filter" in err.reason else "acl"
    return None


def refused_certificate() -> None:
    """A client whose certificate names no user."""
    REFUSALS.labels("certificate").inc()


async def observed(result: Awaitable[str], command: RacsCommand) -> str:
    """Await one command's execution, counting its outcome (and timing an APDU's card)."""
    name = type(command).__name__.lower()
    is_apdu = isinstance(command, Apdu)
    started = time.perf_counter()
    try:
        text = await result
    except RacsError as err:
        COMMANDS.labels(name, err.error_class.name.lower()).inc()
        cause = refusal_cause(err)
        if cause is not None:
            REFUSALS.labels(cause).inc()
        if is_apdu:
            refused = cause is not None or err.error_class is not ErrorClass.HARDWARE
            APDUS.labels("refused" if refused else "failed").inc()
        raise
    except Exception:
        COMMANDS.labels(name, "internal").inc()
        raise
    COMMANDS.labels(name, "ok").inc()
    if is_apdu:
        CARD_SECONDS.observe(time.perf_counter() - started)
        sw1 = text[-4:-2].upper()
        APDUS.labels("sw_ok" if sw1 in ("90", "61") else "sw_error").inc()
    return text


class _Sessions(Collector):
    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(SESSIONS, "RACS sessions open now.", value=self._count())


def metric_names() -> set[str]:
    """Every metric this module can export (for the docs check)."""
    return _exposed() | {SESSIONS}


class Exporter:
    def __init__(self, host: str, port: int, sessions: Callable[[], int]) -> None:
        self._collector = _Sessions(sessions)
        REGISTRY.register(self._collector)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=REGISTRY)
        except BaseException:
            REGISTRY.unregister(self._collector)
            raise
        self.port = int(self._server.server_port)
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        REGISTRY.unregister(self._collector)


def _exposed() -> set[str]:
    """Family names as scraped: a counter's with ``_total``."""
    return {f.name + "_total" if f.type == "counter" else f.name for f in REGISTRY.collect()}
