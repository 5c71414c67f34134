"""The phone app's guards, in-process: which Host names it serves, and the refusals."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from key_client.channel import OpenChannel
from key_client.phone.app import create_app, serving_names


def test_serving_names() -> None:
    assert serving_names("127.0.0.1", 8480) == {"127.0.0.1:8480", "localhost:8480", "[::1]:8480"}
    assert "192.0.2.7:9000" in serving_names("192.0.2.7", 9000)
    assert "[2001:db8::1]:8480" in serving_names("2001:db8:0::1", 8480)
    assert "phone.example:8480" in serving_names("Phone.Example.", 8480)
    assert serving_names("0.0.0.0", 8480) == serving_names("127.0.0.1", 8480)
    assert "localhost" in serving_names("127.0.0.1", 80)  # browsers drop the default port


def _no_card() -> OpenChannel:
    raise AssertionError("a refused request must never reach the card")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example:8480"}, 421),
        ({"Host": "127.0.0.1:8481"}, 421),  # another port is another origin
        ({"Host": ""}, 421),
        ({"Host": "127.0.0.1:8480", "Origin": "http://evil.example:8480"}, 403),
        ({"Host": "127.0.0.1:8480", "X-ELock": "1"}, 403),
        ({"Host": "127.0.0.1:8480"}, 403),
    ],
)
def test_refused_before_the_card(headers: dict[str, str], status: int) -> None:
    client = TestClient(create_app(_no_card, session="s" * 43))
    response = client.post("/api/open", json={"id": 1}, headers=headers)
    assert response.status_code == status, response.text


def test_the_page_carries_the_secret_and_is_not_cached() -> None:
    client = TestClient(create_app(_no_card, session="per-launch-secret"))
    page = client.get("/", headers={"Host": "localhost:8480"})
    assert page.status_code == 200 and 'content="per-launch-secret"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/", headers={"Host": "evil.example:8480"}).status_code == 421


def test_no_page_elsewhere_may_frame_the_app() -> None:
    """Clickjacking: every answer, refusals too, forbids frames and foreign content."""
    client = TestClient(create_app(_no_card, session="s" * 43))
    for path, host in (("/", "127.0.0.1:8480"), ("/app.js", "localhost:8480"),
                       ("/api/keys", "127.0.0.1:8480"), ("/", "evil.example:8480")):  # fmt: skip
        response = client.get(path, headers={"Host": host})
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, path
        assert "'unsafe-inline'" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_beyond_loopback_the_page_carries_no_secret() -> None:
    """Any peer on the network can fetch the page; the secret goes in a pairing address."""
    from key_client.phone.app import is_loopback, pairing_url

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7")
    assert not is_loopback("phone.example")
    assert pairing_url("0.0.0.0", 8480, "s") == "http://127.0.0.1:8480/#pair=s"
    assert pairing_url("2001:db8::1", 8480, "s") == "http://[2001:db8::1]:8480/#pair=s"
    client = TestClient(create_app(_no_card, session="per-launch-secret", page_secret=False))
    page = client.get("/", headers={"Host": "127.0.0.1:8480"})
    assert page.status_code == 200 and "per-launch-secret" not in page.text
    assert 'name="elock-session" content=""' in page.text
