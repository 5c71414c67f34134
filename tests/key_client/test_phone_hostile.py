"""The phone app against a hostile web page and a hostile network peer, with a real lock.

A page on another site must not be able to put the app in a frame (and so lay its
own content over the Open button, clickjacking), and a peer that merely connects to
the app's port (another device on the Wi-Fi when the app listens beyond loopback)
must not be handed the per-launch secret that opens the door.
"""

from __future__ import annotations

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
    lock = LockProcess.create(tmp_path / "lock", open_seconds=1.0)
    lock.start()
    try:
        yield lock
    finally:
        lock.stop()


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
