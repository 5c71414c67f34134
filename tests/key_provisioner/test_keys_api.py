"""Keys through the API: issue, list with filters, show, revoke."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select, text

from elock_common import KeyIdentity, LockSecret, Rights
from key_provisioner.db.models import Key
from key_provisioner.services import keys
from key_provisioner.services.keys import NewKey
from tests.key_provisioner.conftest import Api, service_actor


@pytest.fixture
def setup(admin: Api) -> dict[str, Any]:
    enrolled = admin.enrol()
    return {
        "lock": enrolled["lock"],
        "secret": LockSecret.from_text(enrolled["bundle"]["secret"]),
        "se": admin.register_se(),
    }


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def test_issue_returns_identity_and_psk_once(admin: Api, setup: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued = admin.issue(
        setup["lock"]["id"],
        setup["se"]["id"],
        label="cleaner",
        rights=["open", "admin"],
        not_before=_iso(now - dt.timedelta(hours=1)),
        not_after=_iso(now + dt.timedelta(days=7)),
        weekdays=["mon", "tue", "wed", "thu", "fri"],
        window_start=8 * 60,
        window_end=18 * 60,
        max_uses=5,
    )
    claims = KeyIdentity.decode(issued["identity"])
    assert len(issued["identity"]) == 32 and len(issued["psk"]) == 16
    assert setup["secret"].derive_psk(issued["identity"].encode()).decode() == issued["psk"]
    assert claims.key_id_hex == issued["key_id"]
    assert claims.rights == Rights.OPEN | Rights.ADMIN
    assert claims.weekdays == 0b0011111
    assert (claims.window_start, claims.window_end, claims.max_uses) == (480, 1080, 5)
    assert claims.not_after == int((now + dt.timedelta(days=7)).timestamp())
    assert issued["uri"] == "coaps://127.0.0.1:5684/lock"
    assert issued["state"] == "active" and issued["one_time"] is False
    shown = admin.ok("GET", f"/keys/{issued['id']}")
    assert "psk" not in shown and "uri" not in shown
    assert shown == {k: v for k, v in issued.items() if k not in ("psk", "uri")}
    # The PSK is nowhere in the database.
    with admin.client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        for table in ("keys", "locks", "audit_entries", "api_tokens", "secure_elements"):
            for row in session.execute(text(f"SELECT * FROM {table}")):
                assert issued["psk"] not in repr(tuple(row))


def test_one_time_and_defaults(admin: Api, setup: dict[str, Any]) -> None:
    one_time = admin.issue(setup["lock"]["id"], setup["se"]["id"], one_time=True)
    assert one_time["max_uses"] == 1 and one_time["one_time"] is True
    assert KeyIdentity.decode(one_time["identity"]).one_time
    plain = admin.issue(setup["lock"]["id"], setup["se"]["id"])
    claims = KeyIdentity.decode(plain["identity"])
    assert (claims.not_before, claims.not_after, claims.rights) == (0, 0xFFFFFFFF, Rights.OPEN)
    assert plain["not_before"] is None and plain["not_after"] is None
    assert plain["weekdays"] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@pytest.mark.parametrize(
    "fields",
    [
        {"rights": []},
        {"rights": ["open", "open"]},
        {"rights": ["fly"]},
        {"one_time": True, "max_uses": 3},
        {"max_uses": 256},
        {"window_start": 600, "window_end": 600},
        {"weekdays": []},
        {"weekdays": ["mon", "mon"]},
        {"not_before": "2030-01-01T00:00:00Z", "not_after": "2029-01-01T00:00:00Z"},
        {"not_after": "2030-01-01T00:00:00"},  # no time zone
        {"not_after": "2200-01-01T00:00:00Z"},
        {"not_after": "2001-01-01T00:00:00Z"},  # already over
        {"label": "bell\x07"},
        {"psk": "chosen"},
    ],
)
def test_issue_refusals(admin: Api, setup: dict[str, Any], fields: dict[str, Any]) -> None:
    body = {"lock_id": setup["lock"]["id"], "secure_element_id": setup["se"]["id"], **fields}
    response = admin.post("/keys", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_issue_needs_a_live_lock_and_a_known_se(admin: Api, setup: dict[str, Any]) -> None:
    lock_id, se_id = setup["lock"]["id"], setup["se"]["id"]
    unknown_lock = admin.post(
        "/keys", json={"lock_id": str(uuid.uuid4()), "secure_element_id": se_id}
    )
    assert unknown_lock.status_code == 422
    unknown_se = admin.post(
        "/keys", json={"lock_id": lock_id, "secure_element_id": str(uuid.uuid4())}
    )
    assert unknown_se.status_code == 422
    admin.ok("POST", f"/locks/{lock_id}/retire")
    retired = admin.post("/keys", json={"lock_id": lock_id, "secure_element_id": se_id})
    assert retired.status_code == 409
    assert retired.json()["type"] == "urn:elock:problem:lock-retired"


def test_list_filters_and_pages(admin: Api, setup: dict[str, Any]) -> None:
    other_lock = admin.enrol("back-door")["lock"]
    other_se = admin.register_se("se-other")
    lock_id, se_id = setup["lock"]["id"], setup["se"]["id"]
    mine = [admin.issue(lock_id, se_id, label="staff")["id"] for _ in range(5)]
    theirs = admin.issue(other_lock["id"], other_se["id"], label="guest")
    later = _iso(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    pending = admin.issue(lock_id, other_se["id"], label="guest", not_before=later)
    revoked = admin.ok("POST", f"/keys/{mine[0]}/revoke", json={"reason": "lost"})
    assert revoked["state"] == "revoked" and revoked["revoke_reason"] == "lost"
    # One expired key, issued yesterday through the service layer.
    app_state = admin.client.app.state.elock  # type: ignore[attr-defined]
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with app_state.sessions() as session:
        expired, _, _ = keys.issue(
            session,
            app_state.box,
            NewKey(
                uuid.UUID(lock_id),
                uuid.UUID(se_id),
                label="old",
                not_after=yesterday + dt.timedelta(hours=1),
            ),
            actor=service_actor(admin.client),
            now=yesterday,
        )

    def ids(**params: Any) -> list[str]:
        return [k["id"] for k in admin.ok("GET", "/keys", params=params | {"limit": 500})["items"]]

    assert ids(lock_id=lock_id) == [pending["id"], *reversed(mine), str(expired.id)]
    assert ids(lock_id=other_lock["id"]) == [theirs["id"]]
    assert ids(secure_element_id=other_se["id"]) == [pending["id"], theirs["id"]]
    assert ids(label="guest") == [pending["id"], theirs["id"]]
    assert ids(state="revoked") == [mine[0]]
    assert ids(state="pending") == [pending["id"]]
    assert ids(state="expired") == [str(expired.id)]
    assert set(ids(state="active")) == {*mine[1:], theirs["id"]}
    assert ids(state="active", lock_id=lock_id, label="staff") == list(reversed(mine[1:]))
    key_id = admin.ok("GET", f"/keys/{theirs['id']}")["key_id"]
    assert ids(key_id=key_id) == [theirs["id"]]
    assert admin.get("/keys", params={"state": "lost"}).status_code == 422
    assert admin.get("/keys", params={"limit": 0}).status_code == 422
    assert admin.get("/keys", params={"limit": 501}).status_code == 422
    # Pagination walks every key exactly once.
    seen, cursor = [], None
    while True:
        page = admin.ok(
            "GET", "/keys", params={"limit": 3} | ({"cursor": cursor} if cursor else {})
        )
        seen += [k["id"] for k in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ids() and len(seen) == 8


def test_revoke_is_idempotent_and_bumps_the_lock_version(admin: Api, setup: dict[str, Any]) -> None:
    lock_id = setup["lock"]["id"]
    first = admin.issue(lock_id, setup["se"]["id"])
    second = admin.issue(lock_id, setup["se"]["id"])
    admin.ok("POST", f"/keys/{first['id']}/revoke")
    again = admin.ok("POST", f"/keys/{first['id']}/revoke", json={"reason": "twice"})
    assert again["revoke_reason"] == ""  # the first revocation stands
    admin.ok("POST", f"/keys/{second['id']}/revoke", json={})
    revocation = admin.ok("GET", f"/locks/{lock_id}")["revocation"]
    assert revocation["version"] == 2 and revocation["confirmed_version"] == 0
    assert revocation["in_sync"] is False and revocation["next_attempt_at"] is not None
    assert admin.post(f"/keys/{uuid.uuid4()}/revoke").status_code == 404
    assert admin.post(f"/keys/{second['id']}/revoke", json={"reason": "x" * 201}).status_code == 422
    with admin.client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        stored = session.scalars(select(Key.key_id).where(Key.revoked_at.is_not(None))).all()
        assert sorted(stored) == keys.revoked_key_ids(
            session, uuid.UUID(lock_id), dt.datetime.now(dt.UTC)
        )


def test_revoking_a_key_of_a_retired_lock_pushes_nothing(admin: Api, setup: dict[str, Any]) -> None:
    lock_id = setup["lock"]["id"]
    key = admin.issue(lock_id, setup["se"]["id"])
    admin.ok("POST", f"/locks/{lock_id}/retire")
    assert admin.ok("POST", f"/keys/{key['id']}/revoke")["state"] == "revoked"
    revocation = admin.ok("GET", f"/locks/{lock_id}")["revocation"]
    assert revocation["version"] == 0 and revocation["next_attempt_at"] is None
