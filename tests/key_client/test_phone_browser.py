"""The phone app in headless Chromium (Debian's), driven by Playwright, against the real lock."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elock_testkit.browser import chromium
from elock_testkit.cardproc import make_card, phone_app
from elock_testkit.lockproc import LockProcess, coap
from tests.conftest import require_tool

# Real peers (libcoap, pcscd, Chromium, systemd-analyze...): not in the fast run.
pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
PHONE_SCREEN: dict[str, Any] = {"viewport": {"width": 390, "height": 760}, "device_scale_factor": 2}


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[tuple[str, LockProcess]]:
    require_tool("coap-client-openssl")
    lock = LockProcess.create(tmp_path / "lock", open_seconds=1.0)
    lock.start()
    try:
        good, revoked, admin = lock.mint(), lock.mint(), lock.mint("--admin", "--no-open")
        body = json.dumps({"version": 1, "revoked": [revoked.key_id]})
        revocations = lock.uri.replace("/lock", "/admin/revocations")
        coap("coap-client-openssl", "post", admin, revocations, payload=body)
        doors = [("Front door", lock.uri, good), ("Back door", lock.uri, revoked)]
        with phone_app(make_card(tmp_path, doors)) as url:
            yield url, lock
    finally:
        lock.stop()


def test_tap_open_then_refused_on_a_revoked_key(
    phone: tuple[str, LockProcess], tmp_path: Path
) -> None:
    url, lock = phone
    with chromium(require_tool("chromium")) as browser:
        page = browser.new_page(**PHONE_SCREEN)
        page.goto(url)
        page.get_by_role("button", name="Front door").click()
        page.wait_for_selector("#status.opened", timeout=15000)
        assert page.locator("#status").inner_text().startswith("Opened")
        assert lock.relay_events().count("on") == 1
        page.screenshot(path=str(tmp_path / "phone-opened.png"))
        if os.environ.get("ELOCK_UPDATE_DOCS"):
            shutil.copy(tmp_path / "phone-opened.png", ROOT / "docs" / "phone-app.png")

        page.get_by_role("button", name="Back door").click()
        page.wait_for_selector("#status.refused", timeout=15000)
        text = page.locator("#status").inner_text()
        assert text.startswith("Refused") and "key revoked" in text
        assert lock.relay_events().count("on") == 1


def test_api_refuses_cross_site_requests(phone: tuple[str, LockProcess]) -> None:
    url, lock = phone
    request = urllib.request.Request(url + "api/open", data=b'{"id": 1}', method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    info.value.close()  # an HTTPError holds the response's socket open
    assert info.value.code == 403
    forged = urllib.request.Request(
        url + "api/open",
        data=b'{"id": 1}',
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-ELock": "1",
            "Origin": "http://evil.example",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(forged, timeout=5)
    info.value.close()
    assert info.value.code == 403
    assert "on" not in lock.relay_events()


def test_pin_dialog_for_a_key_that_needs_it(tmp_path: Path) -> None:
    executable = require_tool("chromium")
    lock = LockProcess.create(tmp_path / "lock", open_seconds=1.0)
    lock.start()
    card = make_card(tmp_path, [("Garage", lock.uri, lock.mint())], pin="2468")
    try:
        with phone_app(card) as url, chromium(executable) as browser:
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("button", name="Garage").click()
            page.fill("#pin", "1111")
            page.click("#pin-ok")
            page.wait_for_selector("#status.pin", timeout=15000)
            assert "2 tries left" in page.locator("#status").inner_text()
            assert "on" not in lock.relay_events()
            page.get_by_role("button", name="Garage").click()
            page.fill("#pin", "2468")
            page.click("#pin-ok")
            page.wait_for_selector("#status.opened", timeout=15000)
            assert lock.relay_events().count("on") == 1
    finally:
        lock.stop()


def _curl(url: str, *headers: str, data: str | None = None) -> tuple[int, str]:
    """The request of issue 14, as curl sends it: (HTTP status, body)."""
    curl = require_tool("curl")
    args = [curl, "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]
    for header in headers:
        args += ["-H", header]
    if data is not None:
        args += ["-H", "Content-Type: application/json", "-d", data]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=20)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def test_dns_rebinding_cannot_open_the_door(phone: tuple[str, LockProcess]) -> None:
    """Issue 14: after a rebinding, Host and Origin both carry the attacker's name."""
    url, lock = phone
    port = url.rsplit(":", 1)[1].strip("/")
    evil = [f"Host: evil.example:{port}", f"Origin: http://evil.example:{port}"]
    status, body = _curl(url + "api/open", *evil, "X-ELock: 1", data='{"id": 1}')
    assert status == 421 and "evil.example" in body and "not served here" in body
    status, _ = _curl(url + "api/keys", *evil, "X-ELock: 1")
    assert status == 421
    status, page = _curl(url, f"Host: evil.example:{port}")  # nor can it read the page's secret
    assert status == 421 and "elock-session" not in page
    # The right name with the old fixed marker, or a wrong secret, is refused too.
    for marker in ("1", "x" * 43):
        status, _ = _curl(url + "api/open", f"X-ELock: {marker}", data='{"id": 1}')
        assert status == 403
    # The secret from the page, sent from another origin: refused before routing.
    secret = re.search(r'name="elock-session" content="([^"]+)"', _curl(url)[1])
    assert secret is not None and len(secret.group(1)) >= 32
    status, _ = _curl(url + "api/open", f"X-ELock: {secret.group(1)}",
                      "Origin: http://evil.example", data='{"id": 1}')  # fmt: skip
    assert status == 403
    assert "on" not in lock.relay_events()
    # The page's own origin, with its secret, still works (as the browser test shows).
    status, body = _curl(url + "api/keys", f"X-ELock: {secret.group(1)}")
    assert status == 200 and "Front door" in body


def test_rebound_name_in_chromium_gets_nothing(phone: tuple[str, LockProcess]) -> None:
    """Chromium told that evil.example is 127.0.0.1, as a rebinding DNS server would."""
    url, lock = phone
    port = url.rsplit(":", 1)[1].strip("/")
    rules = "--host-resolver-rules=MAP evil.example 127.0.0.1"
    with chromium(require_tool("chromium"), rules) as browser:
        page = browser.new_page()
        response = page.goto(f"http://evil.example:{port}/")
        assert response is not None and response.status == 421
        assert "not served here" in page.content()
        opened = page.evaluate(
            """async () => (await fetch("/api/open", {method: "POST",
                 headers: {"X-ELock": "1", "Content-Type": "application/json"},
                 body: JSON.stringify({id: 1})})).status"""
        )
        assert opened == 421
        # The same browser on a name the app serves gets the working page.
        page.goto(url.replace("127.0.0.1", "localhost"))
        page.get_by_role("button", name="Front door").click()
        page.wait_for_selector("#status.opened", timeout=15000)
    assert lock.relay_events().count("on") == 1


def test_a_lost_answer_says_the_door_may_be_open(tmp_path: Path) -> None:
    """The request reached the lock, every answer was lost: no "unreachable", a warning."""
    from elock_testkit.lossy_relay import DOWN, LossyRelay, drop_application_data

    executable = require_tool("chromium")
    lock = LockProcess.create(tmp_path / "lock", open_seconds=1.0)
    lock.start()
    try:
        relay = LossyRelay(("127.0.0.1", lock.port), loss=0.0, pattern=drop_application_data(DOWN))
        with relay:
            uri = f"coaps://127.0.0.1:{relay.port}/lock"
            card = make_card(tmp_path, [("Side door", uri, lock.mint())])
            with phone_app(card, "--timeout", "3") as url, chromium(executable) as browser:
                page = browser.new_page(
                    viewport={"width": 390, "height": 760}, device_scale_factor=2
                )
                page.goto(url)
                page.get_by_role("button", name="Side door").click()
                page.wait_for_selector("#status.unknown", timeout=20000)
                text = page.locator("#status").inner_text()
                assert text.startswith("No answer from the lock"), text
                assert "the door may be open; check before trying again" in text
                assert lock.relay_events().count("on") == 1
                page.screenshot(path=str(tmp_path / "phone-unknown.png"))
    finally:
        lock.stop()
