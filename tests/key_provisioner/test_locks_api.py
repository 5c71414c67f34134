"""Locks through the API: enrol, list, show, retire — on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from elock_common import LockSecret
from tests.key_provisioner.conftest import Api


def test_enrol_returns_the_bundle_once(admin: Api) -> None:
    enrolled = admin.enrol("front-door", port=5700)
    bundle, lock = enrolled["bundle"], enrolled["lock"]
    assert bundle["format"] == "elock-lock-bundle/1"
    assert bundle["lock_id"] == lock["id"]
    assert (bundle["name"], bundle["host"], bundle["port"]) == ("front-door", "127.0.0.1", 5700)
    secret = LockSecret.from_text(bundle["secret"])
    assert lock["lock_tag"] == secret.lock_tag.hex()
    # Never again: not in show, not in the list.
    shown = admin.get(f"/locks/{lock['id']}").text + admin.get("/locks").text
    assert bundle["secret"] not in shown
    assert lock["revocation"] == {
        "version": 0,
        "confirmed_version": 0,
        "confirmed_at": None,
        "in_sync": True,
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": None,
    }
    assert lock["last_seen_at"] is None


def test_secret_is_sealed_at_rest(admin: Api) -> None:
    from key_provisioner.db.models import Lock

    enrolled = admin.enrol()
    secret_text = enrolled["bundle"]["secret"]
    with admin.client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        row = session.get(Lock, uuid.UUID(enrolled["lock"]["id"]))
        assert row is not None and row.secret_sealed is not None
        assert secret_text.encode() not in row.secret_sealed
        assert LockSecret.from_text(secret_text).to_text().encode() not in row.secret_sealed


def test_names_are_unique_among_locks_in_service(admin: Api) -> None:
    first = admin.enrol("gate")
    clash = admin.post("/locks", json={"name": "gate", "host": "10.0.0.2"})
    assert clash.status_code == 409
    assert clash.headers["content-type"] == "application/problem+json"
    assert clash.json()["type"] == "urn:elock:problem:conflict"
    admin.ok("POST", f"/locks/{first['lock']['id']}/retire")
    admin.enrol("gate")  # a retired lock frees its name


def test_host_validation(admin: Api) -> None:
    for host in ["not a host", "", "-bad.example", "1.2.3.4.5", "a" * 300]:
        response = admin.post("/locks", json={"name": "x", "host": host})
        assert response.status_code == 422, host
        assert response.json()["errors"][0]["loc"][:2] == ["body", "host"]
    for host in ["lock-1.example.net", "::1", "192.0.2.1"]:
        admin.ok("POST", "/locks", 201, json={"name": f"n-{host}", "host": host})
    unknown = admin.post("/locks", json={"name": "y", "host": "::1", "colour": "red"})
    assert unknown.status_code == 422


def test_list_paginates_newest_first_and_hides_retired(admin: Api) -> None:
    ids = [admin.enrol(f"lock-{i}")["lock"]["id"] for i in range(7)]
    admin.ok("POST", f"/locks/{ids[3]}/retire")
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = admin.ok("GET", "/locks", params=params)
        seen += [lock["id"] for lock in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i for i in reversed(ids) if i != ids[3]]
    everything = admin.ok("GET", "/locks", params={"include_retired": True, "limit": 100})
    assert len(everything["items"]) == 7
    bad = admin.get("/locks", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert bad.status_code == 422 and bad.json()["type"] == "urn:elock:problem:invalid-request"


def test_show_and_retire(admin: Api, auditor: Api) -> None:
    lock_id = admin.enrol()["lock"]["id"]
    assert auditor.ok("GET", f"/locks/{lock_id}")["id"] == lock_id
    assert auditor.post(f"/locks/{lock_id}/retire").status_code == 403
    retired = admin.ok("POST", f"/locks/{lock_id}/retire")
    assert retired["retired_at"] is not None
    again = admin.post(f"/locks/{lock_id}/retire")
    assert again.status_code == 409
    assert again.json()["type"] == "urn:elock:problem:lock-retired"
    missing = admin.get(f"/locks/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["title"] == "No such resource"
    assert admin.get("/locks/not-a-uuid").status_code == 422


def test_push_the_revocation_list_now(admin: Api, auditor: Api) -> None:
    lock_id = admin.enrol()["lock"]["id"]
    path = f"/locks/{lock_id}/revocations/push"
    shown = admin.ok("GET", f"/locks/{lock_id}")
    assert shown["revocation"]["in_sync"] is True

    pushed = admin.ok("POST", path)
    assert pushed.keys() == shown.keys() and pushed["id"] == lock_id
    revocation = pushed["revocation"]
    assert (revocation["version"], revocation["confirmed_version"]) == (1, 0)
    assert revocation["in_sync"] is False and revocation["next_attempt_at"] is not None
    assert admin.ok("GET", f"/locks/{lock_id}") == pushed
    # Above what the lock last confirmed, whatever that is: the lock takes the list.
    from key_provisioner.db.models import Lock

    with admin.client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        row = session.get(Lock, uuid.UUID(lock_id))
        assert row is not None
        row.confirmed_version = 9
        session.commit()
    assert admin.ok("POST", path)["revocation"]["version"] == 10

    forbidden = auditor.post(path)
    assert forbidden.status_code == 403
    assert forbidden.json()["type"] == "urn:elock:problem:forbidden"
    missing = admin.post(f"/locks/{uuid.uuid4()}/revocations/push")
    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:elock:problem:not-found"
    admin.ok("POST", f"/locks/{lock_id}/retire")
    retired = admin.post(path)
    assert retired.status_code == 409
    assert retired.json()["type"] == "urn:elock:problem:lock-retired"
    assert admin.ok("GET", f"/locks/{lock_id}")["revocation"]["version"] == 10
