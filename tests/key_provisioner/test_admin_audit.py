"""Which admin did what (issue 14, item 9): every change records its token and address.

Against ``elock-keyserver serve`` on SQLite and PostgreSQL, with tokens made by the
CLI as an operator makes them: two admins change things, an auditor reads the trail
with each filter and page by page. Then, in process: a change whose audit row cannot
be written is not made (one transaction), and a push retry is recorded.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from elock_testkit.liveserver import env, start_keyserver
from key_provisioner.db.models import Key
from key_provisioner.schemas.keys import PushState
from tests.key_provisioner.conftest import Api, TestClient


def _cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "key_provisioner.cli", "--config", str(config), *args]


def _token(config: Path, role: str, name: str) -> tuple[str, str]:
    done = subprocess.run(
        _cli(config, "token", "create", "--role", role, "--name", name),
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    token_id = re.search(r"token (\S+) \(", done.stderr)
    assert token_id, done.stderr
    return done.stdout.strip(), token_id.group(1)


class Http:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, (path, response.text)
        return response.json()


def _walk(reader: Http, query: str, limit: int = 50) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = reader.call("GET", f"/admin-audit?limit={limit}{query}{cursor}")
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        cursor = f"&cursor={page['next_cursor']}"


@pytest.mark.peer
def test_every_change_names_its_token_and_address(tmp_path: Path, database_url: str) -> None:
    server = start_keyserver(tmp_path / "ks", database_url, worker=False)
    config = tmp_path / "ks" / "keyserver.toml"
    clients: list[Http] = []
    try:
        alice_token, alice_id = _token(config, "admin", "alice")
        bob_token, bob_id = _token(config, "admin", "bob")
        audit_token, _ = _token(config, "auditor", "carol")
        alice, bob = Http(server.url, alice_token), Http(server.url, bob_token)
        auditor = Http(server.url, audit_token)
        clients.extend([alice, bob, auditor])
        changes = _make_changes(alice, bob)
        rows = _walk(auditor, "")
        _check_trail(rows, changes, alice_id, bob_id)
        assert _walk(auditor, "", limit=2) == rows  # the same rows, page by page
        assert [r["id"] for r in _walk(auditor, f"&token_id={bob_id}")] == [
            r["id"] for r in rows if r["token_id"] == bob_id
        ]
        by_lock = _walk(auditor, f"&lock_id={changes['lock']}")
        assert [r["action"] for r in by_lock] == [
            "lock.push_revocations",
            "key.revoke",
            "key.issue",
            "key.issue",
            "lock.enrol",
        ]
        by_key = _walk(auditor, f"&key_uuid={changes['lost_key']}")
        assert [(r["action"], r["token_name"], r["detail"]) for r in by_key] == [
            ("key.revoke", "bob", "lost"),
            ("key.issue", "alice", f"key_id {changes['lost_key_id']} cleaner"),
        ]
        by_card = _walk(auditor, f"&secure_element_id={changes['se']}")
        assert {r["action"] for r in by_card} == {"secure_element.register", "key.issue"}
        assert alice.call("GET", "/admin-audit?limit=1")["items"] == rows[:1]  # admins read too
        refused = auditor.http.get("/admin-audit?token_id=not-a-uuid")
        assert refused.status_code == 422
        listing = subprocess.run(
            _cli(config, "token", "list"),
            capture_output=True,
            text=True,
            env=env(),
            timeout=60,
        ).stdout
        for token_id in (alice_id, bob_id):
            line = next(x for x in listing.splitlines() if x.startswith(token_id))
            assert re.search(r"last used \S+ \S+ from 127\.0\.0\.1", line), line
    finally:
        for each in clients:
            each.http.close()
        server.process.stop()
    body = str(rows)
    for token in (alice_token, bob_token, audit_token):
        assert token not in body and token not in server.process.log.read_text()


def _make_changes(alice: Http, bob: Http) -> dict[str, str]:
    lock = alice.call("POST", "/locks", 201, json={"name": "front", "host": "127.0.0.1"})["lock"]
    se = alice.call("POST", "/secure-elements", 201, json={"seid": "se-1", "racs_server": "h:1"})
    body = {"lock_id": lock["id"], "secure_element_id": se["id"]}
    lost = alice.call("POST", "/keys", 201, json=body | {"label": "cleaner"})
    kept = alice.call("POST", "/keys", 201, json=body)
    bob.call("POST", f"/keys/{lost['id']}/revoke", json={"reason": "lost"})
    bob.call("POST", f"/keys/{lost['id']}/revoke", json={"reason": "again"})  # no change
    bob.call("POST", f"/keys/{kept['id']}/push/retry", 409)  # refused: no change
    alice.call("POST", "/locks", 409, json={"name": "front", "host": "127.0.0.1"})  # clash
    bob.call("POST", f"/locks/{lock['id']}/revocations/push")
    back = alice.call("POST", "/locks", 201, json={"name": "back", "host": "::1"})["lock"]
    doomed = alice.call(
        "POST", "/keys", 201, json={"lock_id": back["id"], "secure_element_id": se["id"]}
    )
    bob.call("POST", f"/locks/{back['id']}/retire")
    return {
        "lock": lock["id"],
        "se": se["id"],
        "lost_key": lost["id"],
        "lost_key_id": lost["key_id"],
        "back": back["id"],
        "doomed": doomed["id"],
    }


def _check_trail(rows: list[dict[str, Any]], changes: dict[str, str], alice: str, bob: str) -> None:
    """Newest first, one row per change, each with its token, name and address."""
    assert [(r["action"], r["token_id"]) for r in rows] == [
        ("key.revoke", bob),  # the retirement revoked the back door's key
        ("lock.retire", bob),
        ("key.issue", alice),
        ("lock.enrol", alice),
        ("lock.push_revocations", bob),
        ("key.revoke", bob),
        ("key.issue", alice),
        ("key.issue", alice),
        ("secure_element.register", alice),
        ("lock.enrol", alice),
    ]
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert {r["client"] for r in rows} == {"127.0.0.1"}
    assert {r["token_name"] for r in rows} == {"alice", "bob"}
    assert rows[0]["key_uuid"] == changes["doomed"] and rows[0]["detail"] == "lock retired"
    assert rows[0]["lock_id"] == rows[1]["lock_id"] == changes["back"]
    assert rows[-1]["detail"] == "front" and rows[-2]["detail"] == "se-1"
    assert rows[4]["detail"] == "version 2"  # the list pushed on demand


def test_a_change_whose_audit_row_fails_is_not_made(client: TestClient, admin: Api) -> None:
    """The row is written in the change's transaction: no row, no change."""
    engine = client.app.state.elock.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS"
                    " $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON admin_audit"
                    " FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON admin_audit"
                    " BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"
                )
            )
    refused = admin.post("/locks", json={"name": "front", "host": "127.0.0.1"})
    assert refused.status_code == 500
    assert "secret" not in refused.text and "bundle" not in refused.text
    assert admin.ok("GET", "/locks?include_retired=true")["items"] == []
    with engine.begin() as connection:
        on_table = " ON admin_audit" if engine.dialect.name == "postgresql" else ""
        connection.execute(text(f"DROP TRIGGER refuse{on_table}"))
    lock = admin.enrol()["lock"]
    assert [r["action"] for r in admin.ok("GET", "/admin-audit")["items"]] == ["lock.enrol"]
    assert admin.ok("GET", "/admin-audit")["items"][0]["lock_id"] == lock["id"]


def test_a_push_retry_is_recorded(client: TestClient, admin: Api) -> None:
    lock = admin.enrol()["lock"]
    se = admin.register_se()
    key = admin.issue(lock["id"], se["id"])
    engine = client.app.state.elock.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:  # the worker gave up on it
        connection.execute(
            update(Key)
            .where(Key.id == uuid.UUID(key["id"]))
            .values(push_state=PushState.FAILED.value)
        )
    admin.ok("POST", f"/keys/{key['id']}/push/retry")
    rows = admin.ok("GET", "/admin-audit", params={"key_uuid": key["id"]})["items"]
    assert [(r["action"], r["detail"], r["client"]) for r in rows] == [
        ("key.push_retry", "pending", "testclient"),
        ("key.issue", f"key_id {key['key_id']}", "testclient"),
    ]
