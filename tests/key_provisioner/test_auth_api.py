"""Tokens and roles: no token, no answer; an auditor reads and changes nothing."""

from __future__ import annotations

import uuid

import pytest

from key_provisioner.services import tokens
from tests.key_provisioner.conftest import Api, TestClient, make_token

ROUTES = [
    ("GET", "/locks"),
    ("POST", "/locks"),
    ("GET", f"/locks/{uuid.uuid4()}"),
    ("POST", f"/locks/{uuid.uuid4()}/retire"),
    ("GET", f"/locks/{uuid.uuid4()}/audit"),
    ("POST", f"/locks/{uuid.uuid4()}/revocations/push"),
    ("GET", "/keys"),
    ("POST", "/keys"),
    ("GET", f"/keys/{uuid.uuid4()}"),
    ("POST", f"/keys/{uuid.uuid4()}/revoke"),
    ("POST", f"/keys/{uuid.uuid4()}/push/retry"),
    ("GET", f"/keys/{uuid.uuid4()}/audit"),
    ("GET", "/secure-elements"),
    ("POST", "/secure-elements"),
    ("GET", "/audit"),
    ("GET", "/admin-audit"),
    ("GET", "/tokens/me"),
    ("GET", "/no/such/path"),
    ("DELETE", "/locks"),
]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer elk_wrong", "Basic YWRtaW46YWRtaW4=", "Bearer " + "x" * 5000],
)
def test_every_request_without_a_valid_token_is_refused(
    client: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in ROUTES:
        # Even a body that would not validate must not get past the token check.
        response = client.request(method, path, headers=headers, content=b"{not json")
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        problem = response.json()
        assert problem["type"] == "urn:elock:problem:unauthenticated"
        assert problem["status"] == 401 and problem["title"] and problem["detail"]


def test_docs_need_no_token(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_auditor_reads_but_cannot_change(admin: Api, auditor: Api) -> None:
    lock = admin.enrol()["lock"]
    se = admin.register_se()
    key = admin.issue(lock["id"], se["id"])
    assert auditor.get("/keys").status_code == 200
    assert auditor.get(f"/keys/{key['id']}").status_code == 200
    forbidden = [
        auditor.post("/locks", json={"name": "x", "host": "127.0.0.1"}),
        auditor.post("/keys", json={"lock_id": lock["id"], "secure_element_id": se["id"]}),
        auditor.post(f"/keys/{key['id']}/revoke"),
        auditor.post(f"/keys/{key['id']}/push/retry"),
        auditor.post(f"/locks/{lock['id']}/retire"),
        auditor.post(f"/locks/{lock['id']}/revocations/push"),
    ]
    for response in forbidden:
        assert response.status_code == 403, response.text
        assert response.json()["type"] == "urn:elock:problem:forbidden"
    assert admin.ok("GET", f"/keys/{key['id']}")["state"] == "active"


def test_revoked_token_stops_working(client: TestClient) -> None:
    token = make_token(client, "admin", "ops")
    api = Api(client, token)
    assert api.get("/locks").status_code == 200
    with client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        row = next(t for t in tokens.list_tokens(session) if t.name == "ops")
        assert row.token_hash != token.encode()  # only the hash is stored
        tokens.revoke(session, row.id)
    assert api.get("/locks").status_code == 401
