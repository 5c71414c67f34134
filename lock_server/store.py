"""The lock's persistent state: revocations, use counts, audit log.

SQLite in WAL mode with ``synchronous=FULL``: every commit is on disk before
the call returns, so a power cut loses no acknowledged revocation and no
counted use. A one-time key's use is committed *before* the relay moves:
after a crash a key may have been spent without opening, never the reverse.

The audit table is bounded by pruning, and pruning keeps every row the key
server has not confirmed. That contract is the *delivery watermark*:

- ``audit_delivered_through()``: the highest row id the key server holds;
- ``mark_audit_delivered(row_id)``: whoever carries rows to the key server
  (today the key server's pull of ``/admin/audit?since=ID``, which proves it
  stored every row up to ``ID``) calls this once the rows are confirmed. It
  only moves forward, and never past a row the lock has written;
- ``prune_audit(max_rows)``: deletes the oldest rows at or below the watermark
  until at most ``max_rows`` remain; rows above it are never deleted.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revoked (key_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS uses (key_id TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    key_id TEXT,
    peer TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('granted', 'refused')),
    reason TEXT NOT NULL
);
"""

MAX_AUDIT_PAGE = 500
# (ts, key_id, peer, action, "granted" | "refused", reason): a row not yet written.
AuditEntry = tuple[float, str | None, str, str, str, str]
BUSY_TIMEOUT_MS = 5000  # the audit writer's connection and this one share the file


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: float
    key_id: str | None
    peer: str
    action: str
    outcome: str
    reason: str

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "ts": self.ts,
            "key_id": self.key_id,
            "peer": self.peer,
            "action": self.action,
            "outcome": self.outcome,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AuditPrune:
    """What one prune did; ``kept > limit`` means undelivered rows held it back."""

    deleted: int
    kept: int
    undelivered: int
    limit: int


class LockStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.path = path

    def close(self) -> None:
        self._db.close()

    # -- revocations ---------------------------------------------------------

    @property
    def revocation_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name='revocation_version'").fetchone()
        return int(row[0]) if row else 0

    def revocation_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM revoked").fetchone()[0])

    def is_revoked(self, key_id: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM revoked WHERE key_id=?", (key_id,)).fetchone()
            is not None
        )

    def replace_revocations(self, version: int, key_ids: Iterable[str]) -> int:
        """Install list ``version`` if it is newer; answer the version now held.

        The whole list replaces the old one in one transaction, so a push is
        idempotent and a lock never holds half of two lists.
        """
        with self._transaction():
            current = self.revocation_version
            if version <= current:
                return current
            self._db.execute("DELETE FROM revoked")
            self._db.executemany(
                "INSERT OR IGNORE INTO revoked (key_id) VALUES (?)", ((k,) for k in key_ids)
            )
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES ('revocation_version', ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (version,),
            )
            return version

    # -- the key server's clock ------------------------------------------------

    def server_clock_floor(self) -> int:
        """The latest key-server time the lock has measured, Unix seconds (0: never)."""
        row = self._db.execute("SELECT value FROM meta WHERE name='server_clock'").fetchone()
        return int(row[0]) if row else 0

    def raise_server_clock_floor(self, seconds: int) -> int:
        """Record a key-server time; the floor only moves forward. Returns the floor."""
        with self._transaction():
            current = self.server_clock_floor()
            if seconds <= current:
                return current
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES ('server_clock', ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (seconds,),
            )
            return seconds

    # -- use counts ----------------------------------------------------------

    def uses(self, key_id: str) -> int:
        row = self._db.execute("SELECT count FROM uses WHERE key_id=?", (key_id,)).fetchone()
        return int(row[0]) if row else 0

    def consume_use(self, key_id: str, max_uses: int) -> bool:
        """Count one use if the key has one left; durable before it returns."""
        with self._transaction():
            used = self.uses(key_id)
            if max_uses and used >= max_uses:
                return False
            self._db.execute(
                "INSERT INTO uses (key_id, count) VALUES (?, 1) "
                "ON CONFLICT(key_id) DO UPDATE SET count = count + 1",
                (key_id,),
            )
            return True

    # -- audit ---------------------------------------------------------------

    def audit(
        self,
        *,
        key_id: str | None,
        peer: str,
        action: str,
        granted: bool,
        reason: str,
        ts: float | None = None,
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO audit (ts, key_id, peer, action, outcome, reason) VALUES (?,?,?,?,?,?)",
            (
                time.time() if ts is None else ts,
                key_id,
                peer,
                action,
                "granted" if granted else "refused",
                reason,
            ),
        )
        return int(cur.lastrowid or 0)

    def append_audit(self, rows: Iterable[AuditEntry]) -> None:
        """Write many rows in one transaction: one fsync for the batch."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO audit (ts, key_id, peer, action, outcome, reason) "
                "VALUES (?,?,?,?,?,?)",
                rows,
            )

    def audit_rows(self, since: int = 0, limit: int = MAX_AUDIT_PAGE) -> list[AuditRow]:
        limit = max(1, min(limit, MAX_AUDIT_PAGE))
        rows = self._db.execute(
            "SELECT id, ts, key_id, peer, action, outcome, reason FROM audit "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (since, limit),
        ).fetchall()
        return [AuditRow(*row) for row in rows]

    def audit_row_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM audit").fetchone()[0])

    # -- audit delivery and pruning (the contract in the module docstring) ----

    def audit_delivered_through(self) -> int:
        """The highest audit row id the key server has confirmed (0: none)."""
        row = self._db.execute("SELECT value FROM meta WHERE name='audit_delivered'").fetchone()
        return int(row[0]) if row else 0

    def mark_audit_delivered(self, row_id: int) -> int:
        """Record that the key server holds every row up to ``row_id``; answer the watermark.

        The watermark never moves back, and never past the last row id the
        lock has handed out, so a confused or hostile caller cannot make
        pruning delete rows written later.
        """
        with self._transaction():
            seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
            through = min(max(0, row_id), int(seq[0]) if seq else 0)
            current = self.audit_delivered_through()
            if through <= current:
                return current
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES ('audit_delivered', ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (through,),
            )
            return through

    def prune_audit(self, max_rows: int) -> AuditPrune:
        """Delete the oldest delivered rows until at most ``max_rows`` remain."""
        if max_rows < 0:
            raise ValueError("max_rows must be 0 or more")
        with self._transaction():
            total = self.audit_row_count()
            watermark = self.audit_delivered_through()
            excess = total - max_rows
            deleted = 0
            if excess > 0:
                cur = self._db.execute(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE id <= ? "
                    "ORDER BY id LIMIT ?)",
                    (watermark, excess),
                )
                deleted = max(0, cur.rowcount)
            kept = total - deleted
            above = "SELECT count(*) FROM audit WHERE id > ?"
            undelivered = int(self._db.execute(above, (watermark,)).fetchone()[0])
        return AuditPrune(deleted=deleted, kept=kept, undelivered=undelivered, limit=max_rows)

    @property
    def audit_log_id(self) -> int:
        """A random id of this audit log, made with it: the key server sees a new one when
        the lock's state was lost or replaced (its row ids then start again)."""
        with self._transaction():
            row = self._db.execute("SELECT value FROM meta WHERE name='audit_log'").fetchone()
            if row is not None:
                return int(row[0])
            log_id = secrets.randbelow(2**53 - 1) + 1
            self._db.execute("INSERT INTO meta (name, value) VALUES ('audit_log', ?)", (log_id,))
            return log_id

    def new_audit_log_id(self) -> int:
        """Name this log anew: its rows are not the ones the key server holds (a restored
        backup numbers new rows below the server's cursor). The server then takes the log
        from its first row, as a new generation, storing no row twice."""
        log_id = secrets.randbelow(2**53 - 1) + 1
        self._db.execute(
            "INSERT INTO meta (name, value) VALUES ('audit_log', ?) "
            "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (log_id,),
        )
        self._db.execute("DELETE FROM meta WHERE name='audit_delivered'")
        return log_id

    def last_audit_id(self) -> int:
        row = self._db.execute("SELECT max(id) FROM audit").fetchone()
        return int(row[0] or 0)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
