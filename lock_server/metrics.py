"""The lock's Prometheus metrics, served on a local HTTP port when ``[metrics]`` says so.

Off by default (a lock on a Pi should not open a port nobody asked for), on
loopback by default when on: a local agent (Prometheus, node_exporter's
textfile, a VPN'd scraper) reads it. Counting costs the open path one
dictionary lookup and a lock-free add; what the database knows (revocation
version, audit rows waiting) is read when scraped, on a connection of its own.

Labels are bounded: a refusal's *reason* is mapped to one of a fixed set of
words (:func:`reason_label`), never the text with its numbers, never a key id
or a peer address. Those go in the log line of the same event.

Hooks for the sync channel (``lock_server`` sync client): call
:func:`sync_state` when it connects or drops and :func:`clock_offset` when it
measures the key server's clock; the gauges appear once set.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lock_server.errors import LockConfigError

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
OPENS = Counter(
    "elock_lock_opens",
    "Open requests decided, by outcome (granted, refused) and reason.",
    ["outcome", "reason"],
    registry=REGISTRY,
)
HANDSHAKE_FAILURES = Counter(
    "elock_lock_handshake_failures",
    "DTLS handshakes refused or failed, by cause.",
    ["cause"],
    registry=REGISTRY,
)
ADMIN_REFUSALS = Counter(
    "elock_lock_admin_refusals",
    "Admin requests (revocation list, audit) refused, by action and reason.",
    ["action", "reason"],
    registry=REGISTRY,
)
RELAY_ACTUATIONS = Counter(
    "elock_lock_relay_actuations",
    "Times the strike relay was energized (a door opened).",
    registry=REGISTRY,
)
RELAY_ENERGIZED = Gauge(
    "elock_lock_relay_energized",
    "1 while the strike relay is energized (door open), 0 when released.",
    registry=REGISTRY,
)

# Ordered: the first fragment found in a reason names it.
_REASONS = (
    ("opened", "opened"),
    ("no elock key", "no_key"),
    ("revoked", "revoked"),
    ("lacks the", "missing_right"),
    ("clock not set", "clock_not_set"),
    ("not yet valid", "not_yet_valid"),
    ("expired", "expired"),
    ("weekly schedule", "outside_schedule"),
    ("daily time window", "outside_window"),
    ("one-time key already used", "used_up"),
    ("used up", "used_up"),
    ("malformed identity", "malformed_identity"),
    ("another lock", "other_lock"),
    ("wrong psk", "wrong_psk"),
    ("second, different clientkeyexchange", "out_of_order"),
    ("payload", "bad_request"),
    ("version must", "bad_request"),
    ("revoked must", "bad_request"),
    ("key id must", "bad_request"),
)
_ACTIONS = frozenset({"read revocations", "push revocations", "read audit"})


def reason_label(reason: str) -> str:
    """A refusal's reason as one word of a fixed set ("other" for anything new)."""
    text = reason.lower()
    return next((label for fragment, label in _REASONS if fragment in text), "other")


def open_decided(refusal: Any) -> None:
    """``refusal`` is the policy's ``Refusal`` or None (granted)."""
    if refusal is None:
        OPENS.labels("granted", "opened").inc()
    else:
        OPENS.labels("refused", reason_label(refusal.reason)).inc()


def refused(action: str, reason: str) -> None:
    """A refusal outside ``try_open``: a handshake, an open with no key, an admin request."""
    label = reason_label(reason)
    if action == "handshake":
        HANDSHAKE_FAILURES.labels(label).inc()
    elif action == "open":
        OPENS.labels("refused", label).inc()
    else:
        ADMIN_REFUSALS.labels(action if action in _ACTIONS else "other", label).inc()


def relay_changed(energized: bool) -> None:
    RELAY_ENERGIZED.set(1 if energized else 0)
    if energized:
        RELAY_ACTUATIONS.inc()


class _SyncStatus:
    connected: bool | None = None
    clock_offset: float | None = None


SYNC = _SyncStatus()


def sync_state(connected: bool) -> None:
    """Hook for the sync client: the channel to the key server went up or down."""
    SYNC.connected = connected


def clock_offset(seconds: float) -> None:
    """Hook for the sync client: the key server's clock minus this lock's, last measured."""
    SYNC.clock_offset = seconds


class StateCollector(Collector):
    """What the lock's database and sync client know, read at scrape time."""

    def __init__(self, database: Path) -> None:
        self._database = database

    def collect(self) -> Iterable[Metric]:
        yield from self._from_database()
        if SYNC.connected is not None:
            yield GaugeMetricFamily(
                "elock_lock_sync_connected",
                "1 while the sync channel to the key server is up.",
                value=int(SYNC.connected),
            )
        if SYNC.clock_offset is not None:
            yield GaugeMetricFamily(
                "elock_lock_clock_offset_seconds",
                "The key server's clock minus the lock's, as the sync channel last measured.",
                value=SYNC.clock_offset,
            )

    def _from_database(self) -> Iterable[Metric]:
        try:
            db = sqlite3.connect(f"file:{self._database}?mode=ro", uri=True, timeout=2.0)
            try:
                version, revoked, pending, pushed = _read(db)
            finally:
                db.close()
        except sqlite3.Error as exc:
            log.warning("metrics: cannot read the lock's database: %s", exc)
            yield GaugeMetricFamily("elock_lock_database_up", _DB_UP, value=0)
            return
        yield GaugeMetricFamily("elock_lock_database_up", _DB_UP, value=1)
        yield GaugeMetricFamily("elock_lock_revocation_version", _VERSION, value=version)
        yield GaugeMetricFamily("elock_lock_revoked_keys", "Key ids held revoked.", value=revoked)
        yield GaugeMetricFamily("elock_lock_audit_rows_pending_upload", _PENDING, value=pending)
        if pushed is not None:
            yield GaugeMetricFamily("elock_lock_revocations_received_timestamp_seconds",
                                    _PUSHED, value=pushed)  # fmt: skip


_DB_UP = "1 if the last scrape could read the lock's database."
_VERSION = "The revocation list version the lock holds (0: none yet)."
_PENDING = "Audit rows above the key server's delivery watermark (not yet confirmed uploaded)."
_PUSHED = "When the key server last delivered a revocation list (Unix time)."


def _read(db: sqlite3.Connection) -> tuple[int, int, int, float | None]:
    def meta(name: str) -> int:
        row = db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    revoked = int(db.execute("SELECT count(*) FROM revoked").fetchone()[0])
    pending = db.execute(
        "SELECT count(*) FROM audit WHERE id > ?", (meta("audit_delivered_through"),)
    ).fetchone()[0]
    pushed = db.execute(
        "SELECT max(ts) FROM audit WHERE action='push revocations' AND outcome='granted'"
    ).fetchone()[0]
    return meta("revocation_version"), revoked, int(pending), pushed


def metric_names() -> set[str]:
    """Every metric this module can export (for the docs check)."""
    return _exposed() | {
        "elock_lock_sync_connected",
        "elock_lock_clock_offset_seconds",
        "elock_lock_database_up",
        "elock_lock_revocation_version",
        "elock_lock_revoked_keys",
        "elock_lock_audit_rows_pending_upload",
        "elock_lock_revocations_received_timestamp_seconds",
    }


class Exporter:
    """The HTTP listener; ``close()`` stops it and forgets the database collector."""

    def __init__(self, host: str, port: int, database: Path) -> None:
        self._collector = StateCollector(database)
        REGISTRY.register(self._collector)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=REGISTRY)
        except BaseException:
            REGISTRY.unregister(self._collector)
            raise
        self.port = int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        REGISTRY.unregister(self._collector)


def start(config: Any, door: Any) -> Exporter | None:
    """Serve ``/metrics`` if ``[metrics] enabled``; follow the door's relay either way."""
    door.watch(lambda: relay_changed(door.is_open))
    relay_changed(door.is_open)
    if not config.metrics.enabled:
        return None
    host, port = config.metrics.host, config.metrics.port
    try:
        exporter = Exporter(host, port, config.data_dir / "lock.sqlite3")
    except OSError as exc:
        raise LockConfigError(f"metrics: cannot listen on {host}:{port}: {exc.strerror}") from None
    log.warning("lock %r metrics on http://%s:%d/metrics", config.name, config.metrics.host,
                exporter.port)  # fmt: skip
    return exporter


def _exposed() -> set[str]:
    """Family names as scraped: a counter's with ``_total``."""
    return {f.name + "_total" if f.type == "counter" else f.name for f in REGISTRY.collect()}
