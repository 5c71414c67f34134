"""The phone app's "Update keys" in headless Chromium, against a real key server.

The app syncs when it starts: a key issued for its card arrives, shows as a
button and opens the lock. Revoked, "Update keys" removes it. With the key
server gone, "Update keys" says that it failed and why. The stages it went
through are recorded from the page itself (a MutationObserver), so "shows
progress" is checked on what a person would have seen.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from elock_common import pki
from elock_testkit.browser import chromium
from elock_testkit.cardproc import phone_app
from elock_testkit.ports import free_udp_port
from tests.conftest import require_tool
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


def test_update_keys_adds_opens_removes_and_says_why_it_failed(
    procs: Procs, paths: pki.PkiPaths, api: KeyServer, tmp_path: Path
) -> None:
    executable = require_tool("chromium")
    card = personalize_card(tmp_path, paths, "phone-0009", api.url)
    lock_id, _ = enrol_lock(procs.spawn, HERE, api, tmp_path, free_udp_port())
    se = api.ok("POST", "/secure-elements", {"seid": "phone-0009"}, 201)
    key = api.ok("POST", "/keys", {"lock_id": lock_id, "secure_element_id": se["id"],
                                   "label": "Garden gate"}, 201)  # fmt: skip
    with phone_app(card) as url, chromium(executable) as browser:
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
        # A locator, not wait_for_function: the page's CSP refuses Playwright's string eval.
        page.locator("#sync-status", has_text="1 removed").wait_for(timeout=30000)
        page.get_by_role("button", name="Garden gate").wait_for(state="detached", timeout=10000)
        assert api.ok("GET", f"/keys/{key['id']}")["push"]["state"] == "removed"

        procs.procs[0].terminate()  # the key server goes away
        procs.procs[0].wait(15)
        page.get_by_role("button", name="Update keys").click()
        page.wait_for_selector("#sync-status.failed", timeout=30000)
        text = page.locator("#sync-status").inner_text()
        assert text.startswith("Update failed:") and "unreachable" in text, text
