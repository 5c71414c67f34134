"""The OpenAPI description: complete, and errors documented as problem+json."""

from __future__ import annotations

from typing import Any

from tests.key_provisioner.conftest import TestClient

METHODS = {"get", "post", "put", "patch", "delete"}


def test_every_operation_documents_its_answers(client: TestClient) -> None:
    spec: dict[str, Any] = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "Problem" in schemas
    assert spec["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]
    assert len(operations) == 18
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op.get("tags"), where
        assert op["operationId"].isidentifier(), where
        assert op["security"] == [{"ApiToken": []}], where
        responses = op["responses"]
        assert {"401", "500"} <= set(responses), where
        success = [code for code in responses if code.startswith("2")]
        assert len(success) == 1, where
        assert "$ref" in responses[success[0]]["content"]["application/json"]["schema"], where
        for code, response in responses.items():
            if code[0] in "45":
                assert list(response["content"]) == ["application/problem+json"], where
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, where
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in responses, where
        if op.get("requestBody"):
            assert "400" in responses, where
        if method == "post":
            assert "403" in responses, where


def test_secrets_are_only_in_the_one_time_bodies(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    holders = {
        name for name, s in schemas.items() if {"psk", "secret"} & set(s.get("properties", {}))
    }
    assert holders == {"KeyIssued", "LockBundle"}
