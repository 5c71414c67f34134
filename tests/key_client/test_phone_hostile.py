"""The phone app against a hostile web page and a hostile network peer, with a real lock.

A page on another site must not be able to put the app in a frame (and so lay its
own content over the Open button, clickjacking), and a peer that merely connects to
the app's port (another device on the Wi-Fi when the app listens beyond loopback)
must not be handed the per-launch secret that opens the door.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elock_testkit.browser import chromium
from elock_testkit.cardproc import make_card, phone_app
from elock_testkit.lockproc import LockProcess
from tests.conftest import require_tool

pytestmark = pytest.mark.peer  # a real lock, the app as a process, Chromium

ATTACKER = "http://attacker.test"  # answered inside the browser: no packet leaves
# Chromium 142+ asks the user before a public site reaches a loopback address (Local
# Network Access); Firefox, Safari, Android WebViews and older Chromes do not, and a user
# may answer "Allow". The app must hold on its own: the test turns that check off.
NO_LNA = "--disable-features=LocalNetworkAccessChecks"


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[LockProcess]:
    with LockProcess.create(tmp_path / "lock", open_seconds=1.0) as lock:
        yield lock


def test_a_page_on_another_site_cannot_frame_the_app(tmp_path: Path, lock: LockProcess) -> None:
    """Clickjacking: the hostile page frames the app (transparent, under its own bait) and
    the user's tap lands on "Open". The app must refuse to be shown in a frame."""
    card = make_card(tmp_path, [("Front door", lock.uri, lock.mint())])
    with phone_app(card) as url, chromium(require_tool("chromium"), NO_LNA) as browser:
        page = browser.new_context().new_page()
        hostile = f'<!doctype html><iframe id="f" src="{url}" width="400" height="600"></iframe>'

        def attacker_or_app(route: Any) -> None:
            if route.request.url == f"{ATTACKER}/":
                route.fulfill(body=hostile, content_type="text/html")
            elif route.request.url.startswith(url):
                route.continue_()
            else:
                route.abort()

        page.route("**/*", attacker_or_app)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{ATTACKER}/")
        assert url in requested  # Chromium asked for the app ...
        framed = page.frames[1]
        # ... and refused to show it in another site's frame, so nothing in it can be tapped.
        for _ in range(50):  # the error page may commit a moment after the load event
            if framed.url == "chrome-error://chromewebdata/":
                break
            page.wait_for_timeout(100)
        if framed.url != "chrome-error://chromewebdata/":
            framed.get_by_role("button", name="Front door").click(timeout=5000)  # the bait
            framed.wait_for_selector("#status.opened", timeout=15000)
        assert framed.url == "chrome-error://chromewebdata/", (
            f"the app rendered in another site's frame; a tap there: {lock.relay_events()}"
        )
        assert not [u for u in requested if u.endswith("/app.js")]
    assert "on" not in lock.relay_events()


def _get(url: str, **headers: str) -> str:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        body: bytes = r.read()
    return body.decode()


def test_a_network_peer_is_not_handed_the_secret(tmp_path: Path, lock: LockProcess) -> None:
    """``--host 0.0.0.0`` ("serves the loopback names only", configuration.md) listens on
    every interface. A peer on the network is no browser: it writes any Host it likes,
    reads the secret out of the page and opens the door. Here the peer connects over
    loopback, which the app cannot tell from a LAN address by Host alone: the point is
    that it sends nothing but what anyone can send."""
    card = make_card(tmp_path, [("Front door", lock.uri, lock.mint())])
    with phone_app(card, "--host", "0.0.0.0") as url:
        port = url.rsplit(":", 1)[1].strip("/")
        host = {"Host": f"127.0.0.1:{port}"}
        try:
            page = _get(url, **host)
            secret = re.search(r'name="elock-session" content="([^"]*)"', page)
            assert secret is not None
            marker = {"X-ELock": secret.group(1)}
            listed = json.loads(_get(url + "api/keys", **host, **marker))
            request = urllib.request.Request(
                url + "api/open",
                data=json.dumps({"id": listed[0]["container_id"]}).encode(),
                method="POST",
                headers={**host, **marker, "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = response.read().decode()
        except urllib.error.HTTPError as exc:
            answer = f"HTTP {exc.code}"
            exc.close()
        assert answer == "HTTP 403", f"a network peer opened the door: {answer}"

        # The owner opens the address elock-phone printed: the secret is in its fragment,
        # which no browser sends, and the page keeps it in the tab's sessionStorage.
        printed = card.with_suffix(".phone.log").read_text()
        paired = re.search(r"http://127\.0\.0\.1:\d+/#pair=[A-Za-z0-9_-]{43}", printed)
        assert paired is not None, printed
        assert re.search(r'content=""', page)
        with chromium(require_tool("chromium")) as browser:
            tab = browser.new_page()
            tab.goto(paired.group(0))
            tab.get_by_role("button", name="Front door").click()
            tab.wait_for_selector("#status.opened", timeout=15000)
            assert "#pair=" not in tab.url  # not left in the address bar or history
            tab.reload()  # the tab keeps it
            tab.get_by_role("button", name="Front door").wait_for(timeout=15000)
    assert lock.relay_events().count("on") == 1


def _raw(url: str, request: bytes, wait: float) -> bytes:
    """Send ``request`` as is; what came back within ``wait`` seconds."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(request)
        try:
            return s.recv(4096)
        except TimeoutError:
            return b""


def test_no_body_is_read_before_the_secret_and_none_is_large(tmp_path: Path) -> None:
    """Whoever can connect (any process on the phone; the network beyond loopback) must not
    make the app buffer a body without the secret, nor a large one with it."""
    card = make_card(tmp_path, [])
    with phone_app(card) as url:
        port = url.rsplit(":", 1)[1].strip("/")
        head = (f"POST /api/open HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000000\r\n")  # fmt: skip
        answer = _raw(url, (head + "\r\n").encode() + b"{", wait=3)
        assert answer.startswith(b"HTTP/1.1 403"), answer or "no answer: reading 100 MB first"
        page = _get(url)
        secret = re.search(r'name="elock-session" content="([^"]+)"', page)
        assert secret is not None
        marked = (head + f"X-ELock: {secret.group(1)}\r\n\r\n").encode() + b"{"
        answer = _raw(url, marked, wait=3)
        assert answer.startswith(b"HTTP/1.1 413"), answer or "no answer: reading 100 MB first"
