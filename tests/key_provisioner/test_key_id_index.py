"""``GET /keys?key_id=`` finds its key through an index, not by reading every key.

The query is the one the running API sends (caught as it executes), explained by
the database itself. PostgreSQL's planner prefers a scan on a table this small,
so sequential scans are priced out for the EXPLAIN: what is left is what the
planner can do with the indexes there are.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text

from tests.key_provisioner.conftest import Api, TestClient

INDEX = "ix_keys_key_id_issued_at_id"


def test_the_key_id_filter_uses_an_index(client: TestClient, admin: Api) -> None:
    lock = admin.enrol()["lock"]
    se = admin.register_se()
    issued = [admin.issue(lock["id"], se["id"]) for _ in range(5)]
    wanted = issued[2]["key_id"]
    engine = client.app.state.elock.engine  # type: ignore[attr-defined]
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM keys" in statement and "key_id" in statement.split("WHERE", 1)[-1]:
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        page = admin.ok("GET", "/keys", params={"key_id": wanted})
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert [k["id"] for k in page["items"]] == [issued[2]["id"]]
    assert len(seen) == 1, seen
    statement, params = seen[0]
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("ANALYZE keys")
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("EXPLAIN " + statement, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert INDEX in plan and "Index Cond: ((key_id)" in plan, plan
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, params)
            plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
            assert f"SEARCH keys USING INDEX {INDEX} (key_id=?)" in plan, plan
        cursor.close()
        connection.execute(text("SELECT 1"))
