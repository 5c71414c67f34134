"""The key server's own counters and histograms, and the hooks that move them.

Process-local events (requests, pushes, worker rounds, audit rows) are
counters and histograms. With several uvicorn workers they live in
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
``elock-keyserver serve``), so a scrape of any worker sums every worker of the
replica. The fleet's state (keys, locks, revocation lag) is not counted here:
:mod:`.collector` reads it from the database at scrape time, so replicas
report the same value instead of each adding its share.

Label values are bounded: a route *template*, a status code, an outcome from
a fixed list. Never a key id, a token or a peer address.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "elock_keyserver_http_requests",
    "API requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "elock_keyserver_http_request_duration_seconds",
    "Time to answer an API request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOCK_PUSHES = Counter(
    "elock_keyserver_revocation_pushes",
    "Revocation lists pushed to locks, by outcome (confirmed, failed).",
    ["outcome"],
)
CARD_PUSHES = Counter(
    "elock_keyserver_card_pushes",
    "Key container installs and deletes in secure elements, by outcome"
    " (done, retry, busy, failed).",
    ["outcome"],
)
AUDIT_ROWS = Counter(
    "elock_keyserver_audit_rows_ingested",
    "Audit rows pulled from locks and stored.",
)
WORKER_ROUNDS = Counter(
    "elock_keyserver_worker_rounds",
    "Background worker rounds, by outcome (ok, failed).",
    ["outcome"],
)
WORKER_LAST_ROUND = Gauge(
    "elock_keyserver_worker_last_round_timestamp_seconds",
    "When a worker of this replica last finished a round (Unix time; the newest of its"
    " live processes).",
    multiprocess_mode="livemax",
)

_CARD_OUTCOMES = {
    "record_done": "done",
    "record_failed": "failed",
    "_record_busy": "busy",
    "_record_retry": "retry",
}


class WorkerHeartbeat:
    """This process's worker: when it last finished a round (for ``/readyz``)."""

    def __init__(self) -> None:
        self.since = time.monotonic()  # a first round may take a while after start
        self.last_round: float | None = None  # time.monotonic()

    def beat(self) -> None:
        self.last_round = time.monotonic()


HEARTBEAT = WorkerHeartbeat()


def worker_round(ok: bool) -> None:
    WORKER_ROUNDS.labels("ok" if ok else "failed").inc()
    WORKER_LAST_ROUND.set(time.time())
    HEARTBEAT.beat()


def lock_push(confirmed: bool) -> None:
    LOCK_PUSHES.labels("confirmed" if confirmed else "failed").inc()


def card_push(record: Callable[..., object]) -> None:
    """A card push recorded with ``record`` (the worker's recorder names the outcome)."""
    CARD_PUSHES.labels(_CARD_OUTCOMES.get(getattr(record, "__name__", ""), "other")).inc()


def audit_rows_ingested(rows: int) -> None:
    if rows > 0:
        AUDIT_ROWS.inc(rows)


def metric_names() -> set[str]:
    """The names this process exports itself (counters with ``_total``), for the docs check."""
    own = (REQUESTS, REQUEST_SECONDS, LOCK_PUSHES, CARD_PUSHES, AUDIT_ROWS, WORKER_ROUNDS,
           WORKER_LAST_ROUND)  # fmt: skip
    return {f.name + "_total" if f.type == "counter" else f.name for m in own for f in m.collect()}
