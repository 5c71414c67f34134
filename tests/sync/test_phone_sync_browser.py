"""The phone app's "Update keys" in headless Chromium, against a real key server.

The app syncs when it starts: a key issued for its card arrives, shows as a
button and opens the lock. Revoked, "Update keys" removes it. With the key
server gone, "Update keys" says that it failed and why. The stages it went
through are recorded from the page itself (a MutationObserver), so "shows
progress" is checked on what a person would have seen.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from elock_common import pki
from elock_testkit.liveserver import env
from elock_testkit.ports import free_tcp_port, free_udp_port
from elock_testkit.waiting import wait_for
from tests.conftest import require_tool
from tests.key_client.test_phone_browser import CHROMIUM_ARGS
from tests.sync.conftest import HERE, Procs
from tests.sync.stack import KeyServer, enrol_lock, personalize_card

pytestmark = pytest.mark.peer

RECORD_STAGES = """
window.__syncTexts = [];
document.addEventListener("DOMContentLoaded", () => {
  const line = document.getElementById("sync-status");
  new MutationObserver(() => window.__syncTexts.push(line.textContent))
    .observe(line, { childList: true, characterData: true, subtree: true });
});
"""


def _serving(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).read()
    except OSError:
        return False
    return True


def test_update_keys_adds_opens_removes_and_says_why_it_failed(
    procs: Procs, paths: pki.PkiPaths, api: KeyServer, tmp_path: Path
) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    card = personalize_card(tmp_path, paths, "phone-0009", api.url)
    lock_id, _ = enrol_lock(procs.spawn, HERE, api, tmp_path, free_udp_port())
    se = api.ok("POST", "/secure-elements", {"seid": "phone-0009"}, 201)
    key = api.ok("POST", "/keys", {"lock_id": lock_id, "secure_element_id": se["id"],
                                   "label": "Garden gate"}, 201)  # fmt: skip
    port = free_tcp_port()
    phone = subprocess.Popen([sys.executable, "-m", "key_client.phone.cli", "--card", str(card),
                              "--port", str(port)], env=env(), stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    procs.procs.append(phone)
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: _serving(url), 15, "elock-phone start")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 760})
        page.add_init_script(RECORD_STAGES)
        page.goto(url)  # the app syncs on start
        page.wait_for_selector("#sync-status.synced", timeout=30000)
        assert page.locator("#sync-status").inner_text() == "Keys updated: 1 added, 0 removed"
        seen = page.evaluate("window.__syncTexts")
        assert any(t.startswith("Updating keys") for t in seen), seen
        assert api.ok("GET", f"/keys/{key['id']}")["push"]["state"] == "installed"
        page.get_by_role("button", name="Garden gate").click()
        page.wait_for_selector("#status.opened", timeout=15000)

        api.ok("POST", f"/keys/{key['id']}/revoke", {"reason": "moved out"})
        page.get_by_role("button", name="Update keys").click()
        page.wait_for_function(
            "document.getElementById('sync-status').textContent.includes('1 removed')",
            timeout=30000,
        )
        page.get_by_role("button", name="Garden gate").wait_for(state="detached", timeout=10000)
        assert api.ok("GET", f"/keys/{key['id']}")["push"]["state"] == "removed"

        procs.procs[0].terminate()  # the key server goes away
        procs.procs[0].wait(15)
        page.get_by_role("button", name="Update keys").click()
        page.wait_for_selector("#sync-status.failed", timeout=30000)
        text = page.locator("#sync-status").inner_text()
        assert text.startswith("Update failed:") and "unreachable" in text, text
        browser.close()
