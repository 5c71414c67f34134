"""Odd input from outside, on both databases: a clear 400/422 problem, and nothing changes.

The attacks of issue 14 item 8: a NUL byte in a filter or a body field (PostgreSQL refuses
NUL in text and answered 500), an enrolment whose host or name the lock cannot use (the
one-time bundle was shown before anyone noticed), and a body that is not readable JSON
(422 where the docs promise 400). The NUL sweep reads the string parameters and body
fields from the OpenAPI description, so a field added later is attacked too.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.key_provisioner.conftest import Api, TestClient

NUL = "a\x00b"
METHODS = {"get", "post"}


def _counts(admin: Api) -> tuple[int, int, int]:
    """How many locks, secure elements and keys exist (one page is enough here)."""
    return tuple(  # type: ignore[return-value]
        len(admin.ok("GET", path, params={"limit": 500})["items"])
        for path in ("/locks?include_retired=true", "/secure-elements", "/keys")
    )


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _is_string(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = _resolve(spec, schema)
    options = schema.get("anyOf", [schema])
    return any(_resolve(spec, o).get("type") == "string" for o in options)


def _bodies(admin: Api) -> dict[str, dict[str, Any]]:
    """A valid body for each operation that takes one: the NUL is then the only fault."""
    lock = admin.enrol("nul-door")["lock"]
    se = admin.register_se("nul-se")
    key = admin.issue(lock["id"], se["id"])
    return {
        "/locks": {"name": "n2", "host": "127.0.0.1"},
        "/secure-elements": {"seid": "nul-se-2", "racs_server": "127.0.0.1:7443", "label": "x"},
        "/keys": {"lock_id": lock["id"], "secure_element_id": se["id"], "label": "x"},
        "/keys/{key_uuid}/revoke": {"reason": "x"},
        "ids": {"lock_id": lock["id"], "key_uuid": key["id"], "element_id": se["id"]},
    }


def _assert_refused(response: Any, where: str) -> None:
    assert response.status_code in (400, 422), (where, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", where
    assert response.json()["detail"], where


def test_a_nul_byte_in_any_string_filter_or_field_is_a_clear_refusal(
    client: TestClient, admin: Api
) -> None:
    spec = client.get("/openapi.json").json()
    bodies = _bodies(admin)
    ids = bodies.pop("ids")
    before = _counts(admin)
    attacked = []
    for template, item in spec["paths"].items():
        path = template.format(**ids)
        for method, op in item.items():
            if method not in METHODS:
                continue
            for param in op.get("parameters", []):
                if param["in"] == "query" and _is_string(spec, param["schema"]):
                    where = f"{method.upper()} {template}?{param['name']}"
                    response = admin.request(method, path, params={param["name"]: NUL})
                    _assert_refused(response, where)
                    attacked.append(where)
            body = op.get("requestBody")
            if body is None:
                continue
            schema = _resolve(spec, body["content"]["application/json"]["schema"])
            schema = next(  # an optional body is anyOf [the body, null]
                _resolve(spec, s) for s in schema.get("anyOf", [schema]) if s.get("type") != "null"
            )
            for name, field in schema["properties"].items():
                if _is_string(spec, field):
                    where = f"{method.upper()} {template} {name}"
                    response = admin.request(method, path, json={**bodies[template], name: NUL})
                    _assert_refused(response, where)
                    attacked.append(where)
    assert "GET /keys?label" in attacked and "POST /locks name" in attacked
    assert len(attacked) >= 15, attacked
    assert _counts(admin) == before
    assert admin.ok("GET", "/keys", params={"label": "a b"})["items"] == []


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "::",
        "0:0:0:0:0:0:0:0",
        "::ffff:0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
        "240.0.0.1",
        "::ffff:255.255.255.255",
    ],
)
def test_enrolment_refuses_a_host_no_lock_can_be_reached_at(admin: Api, host: str) -> None:
    response = admin.post("/locks", json={"name": "door", "host": host})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["loc"][:2] == ["body", "host"], problem
    assert "bundle" not in response.text and "secret" not in response.text
    assert admin.ok("GET", "/locks?include_retired=true")["items"] == []


@pytest.mark.parametrize(
    "name", [" ", "   ", "\u00a0", "\u2003\u3000", " door", "door ", "a\u0085"]
)
def test_enrolment_refuses_a_blank_or_padded_name(admin: Api, name: str) -> None:
    response = admin.post("/locks", json={"name": name, "host": "127.0.0.1"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][:2] == ["body", "name"]
    assert "secret" not in response.text
    assert admin.ok("GET", "/locks?include_retired=true")["items"] == []
    admin.ok("POST", "/locks", 201, json={"name": "back door", "host": "127.0.0.1"})


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'{"name": "x", "host": "127.0.0.1"', "application/json"),
        (b"\xff\xfe\x00{", "application/json"),
        (b'{"name": "\xff", "host": "127.0.0.1"}', "application/json"),
        (b'{"name": "x", "host": "127.0.0.1"}', "text/plain"),
    ],
)
def test_an_unreadable_body_is_400_as_documented(
    admin: Api, content: bytes, content_type: str
) -> None:
    for path in ("/locks", "/secure-elements", "/keys", f"/keys/{uuid.uuid4()}/revoke"):
        headers = {**admin.headers, "Content-Type": content_type}
        response = admin.client.post(path, content=content, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 400 and problem["title"] == "Bad Request"
        assert "JSON" in problem["detail"], problem
    assert admin.ok("GET", "/locks")["items"] == []
