"""A tampered cursor is the documented 422, never a 500 from the database layer.

A cursor is base64url JSON the client holds, so any value can come back: an id
beyond BIGINT, or a time that leaves the calendar once converted to UTC.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.key_provisioner.conftest import Api

NIL = "00000000-0000-0000-0000-000000000000"


def _cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("/audit", ["9999999999999999999"]),  # 19 digits, above 2**63 - 1
        ("/admin-audit", ["9223372036854775808"]),
        ("/admin-audit", ["\u0663"]),  # a digit, but not an ASCII one
        ("/locks", ["0001-01-01T00:00:00+14:00", NIL]),  # before year 1 in UTC
        ("/keys", ["9999-12-31T23:59:59-14:00", NIL]),  # after year 9999 in UTC
    ],
)
def test_a_cursor_out_of_range_is_refused_as_not_ours(
    auditor: Api, path: str, parts: list[str]
) -> None:
    response = auditor.get(path, params={"cursor": _cursor(*parts)})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "urn:elock:problem:invalid-request"


def test_the_largest_id_cursor_still_works(auditor: Api) -> None:
    page = auditor.ok("GET", "/admin-audit", params={"cursor": _cursor(str(2**63 - 1))})
    assert page == {"items": [], "next_cursor": None}
