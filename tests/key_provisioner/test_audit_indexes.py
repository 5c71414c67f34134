"""A page of a lock's audit log, or of one key id's rows, costs a page, not the log.

``GET /locks/{id}/audit`` (every row of one lock) and ``GET /audit?key_id=`` (one key
id, any lock) are newest first by ``id``. With only the (lock_id, key_id, id) index,
the first read every row of the lock and sorted them for each page, and the second
scanned the whole table when the key id had few rows. The queries are the ones the
running API sends, explained by the database (PostgreSQL with sequential scans and
sorts priced out, as the table is small).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import event

from key_provisioner.db.models import AuditEntry
from tests.key_provisioner.conftest import Api, TestClient


def _plan(engine: Any, statement: str, params: Any) -> str:
    with engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("ANALYZE audit_entries")
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("SET enable_sort = off")
            cursor.execute("EXPLAIN " + statement, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        else:
            cursor.execute("ANALYZE")
            cursor.execute("EXPLAIN QUERY PLAN " + statement, params)
            plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
        cursor.close()
        return plan


@pytest.mark.parametrize(
    ("url", "index"),
    [
        ("/locks/{lock}/audit", "ix_audit_entries_lock_id_id"),
        ("/audit", "ix_audit_entries_key_id_id"),
        ("/audit", "ix_audit_entries_lock_id_id"),
    ],
)
def test_audit_pages_are_served_by_an_index_in_order(
    client: TestClient, admin: Api, url: str, index: str
) -> None:
    lock_id = admin.enrol()["lock"]["id"]
    busy_id = admin.enrol("busy-door")["lock"]["id"]  # most of the log is another lock's
    state = client.app.state.elock  # type: ignore[attr-defined]
    with state.sessions() as session:
        for n in range(1, 301):
            ours = n % 20 == 0
            session.add(
                AuditEntry(
                    lock_id=uuid.UUID(lock_id if ours else busy_id),
                    lock_entry_id=n,
                    at=dt.datetime.now(dt.UTC),
                    key_id="0123456789ab" if ours else f"{n:012x}",
                    peer="192.0.2.1",
                    action="open",
                    outcome="granted",
                    reason="",
                )
            )
        session.commit()
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM audit_entries" in statement:
            seen.append((statement, params))

    event.listen(state.engine, "before_cursor_execute", capture)
    try:
        params = {"limit": "5"}
        if url == "/audit":  # the filter the index serves
            params |= {"key_id": "0123456789ab"} if "key_id" in index else {"lock_id": lock_id}
        page = admin.ok("GET", url.format(lock=lock_id), params=params)
    finally:
        event.remove(state.engine, "before_cursor_execute", capture)
    assert len(page["items"]) == 5 and page["next_cursor"]
    assert len(seen) == 1, seen
    plan = _plan(state.engine, *seen[0])
    if state.engine.dialect.name == "postgresql":
        assert index in plan and "Sort" not in plan, plan
    else:
        assert f"SEARCH audit_entries USING INDEX {index}" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
