"""The admin console in Debian's headless Chromium, against ``elock-keyserver serve`` (issue 18).

Every request to another origin is refused and recorded. An admin signs in, issues a
key (its PSK shown once, then gone, also after a reload), revokes it with a reason and
watches its push reach ``removed``, reads who did it in the admin audit; a problem from
the API shows as a readable message; an auditor sees the same pages with every changing
button disabled. The screenshots of docs/ are made here (``ELOCK_UPDATE_DOCS=1``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from elock_testkit.liveserver import env, start_keyserver
from tests.conftest import require_tool
from tests.key_provisioner.test_docs_offline import CHROMIUM_ARGS

pytestmark = pytest.mark.peer  # headless Chromium and the server as a process

ROOT = Path(__file__).resolve().parents[2]


def _auditor_token(config: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "key_provisioner.cli",
            "--config",
            str(config),
            "token",
            "create",
            "--role",
            "auditor",
            "--name",
            "carol",
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _page(browser: Any, origin: str, elsewhere: list[str]) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 820})

    def only_the_key_server(route: Any) -> None:
        if route.request.url.startswith(origin + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_key_server)
    return context.new_page()


def _sign_in(page: Any, origin: str, token: str, who: str) -> None:
    page.goto(origin + "/console")
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(f"#who:has-text('{who}')", timeout=15000)


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("ELOCK_UPDATE_DOCS"):
        shutil.copy(tmp_path / name, ROOT / "docs" / name)


def test_admin_issues_and_revokes_an_auditor_only_reads(tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    server = start_keyserver(tmp_path / "ks", f"sqlite:///{tmp_path}/ks.sqlite3", worker=False)
    elsewhere: list[str] = []
    try:
        auditor_token = _auditor_token(tmp_path / "ks" / "keyserver.toml")
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as api:
            lock = api.post("/locks", json={"name": "front-door", "host": "192.0.2.10"})
            api.post("/locks", json={"name": "garage", "host": "192.0.2.11"})
            card = api.post(
                "/secure-elements",
                json={"seid": "8933150319000000001", "racs_server": "racs.example:7443"},
            )
            body = {"lock_id": lock.json()["lock"]["id"], "secure_element_id": card.json()["id"]}
            api.post("/keys", json=body | {"label": "owner"})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = _page(browser, server.url, elsewhere)
            _sign_in(page, server.url, server.token, "tests (admin)")
            page.wait_for_selector("#locks-table td:has-text('front-door')")
            _shot(page, tmp_path, "console-locks.png")
            psk = _issue_and_forget(page, tmp_path)
            _revoke(page, tmp_path)
            _problems_read_well(page)
            storage = page.evaluate("[Object.keys(sessionStorage), localStorage.length]")
            assert storage == [["elock-token"], 0] and page.evaluate("document.cookie") == ""
            page.reload()  # still signed in (this tab), and the PSK is nowhere
            page.wait_for_selector("#who:has-text('tests (admin)')")
            assert psk not in page.content()
            _auditor_reads_only(browser, server.url, auditor_token, elsewhere, tmp_path)
            browser.close()
    finally:
        server.process.stop()
    assert elsewhere == []


def _issue_and_forget(page: Any, tmp_path: Path) -> str:
    page.get_by_role("tab", name="Keys").click()
    form = page.locator("#issue-form")
    form.locator("select[name=lock_id]").select_option(label="front-door")
    form.locator("input[name=label]").fill("cleaner")
    form.locator("input[name=window_start]").fill("08:00")
    form.locator("input[name=window_end]").fill("18:00")
    for day in ("sat", "sun"):
        form.get_by_label(day).uncheck()
    form.locator("input[name=max_uses]").fill("5")
    form.get_by_role("button", name="Issue key").click()
    page.wait_for_selector("#issued:not([hidden])")
    psk = page.locator("#issued-psk").inner_text()
    identity = page.locator("#issued-identity").inner_text()
    assert len(psk) == 16 and len(identity) == 32
    assert page.locator("#issued-uri").inner_text() == "coaps://192.0.2.10:5684/lock"
    page.wait_for_selector("#keys-table td:has-text('cleaner')")
    page.get_by_role("button", name="Done, forget it").click()
    assert page.locator("#issued").is_hidden() and psk not in page.content()
    _shot(page, tmp_path, "console-keys.png")
    return psk


def _revoke(page: Any, tmp_path: Path) -> None:
    row = page.locator("#keys-table tr", has_text="cleaner")
    row.get_by_role("button", name="Revoke").click()
    row.get_by_label("revoke reason").fill("lost")
    row.get_by_role("button", name="Confirm revoke").click()
    page.wait_for_selector("#keys-table tr:has-text('cleaner') td:has-text('revoked: lost')")
    page.wait_for_selector("#keys-table tr:has-text('cleaner') td.push:has-text('removed')")
    row.get_by_role("button", name="Changes").click()
    page.wait_for_selector("#admin-audit-table td:has-text('key.revoke')")
    cells = page.locator("#admin-audit-table tbody tr").all_inner_texts()
    assert [re.split(r"\t", c)[1:4] for c in cells] == [
        ["tests", "127.0.0.1", "key.revoke"],
        ["tests", "127.0.0.1", "key.issue"],
    ]
    page.get_by_role("tab", name="Admin audit").click()
    page.wait_for_selector("#admin-audit-table td:has-text('lock.enrol')")
    _shot(page, tmp_path, "console-admin-audit.png")


def _problems_read_well(page: Any) -> None:
    page.get_by_role("tab", name="Keys").click()
    form = page.locator("#issue-form")
    form.locator("input[name=not_after]").fill("2001-01-01T00:00")
    form.get_by_role("button", name="Issue key").click()
    error = page.locator("#error")
    error.wait_for()
    assert "The request breaks a rule: not_after is in the past" in error.inner_text()
    assert page.locator("#issued").is_hidden()
    form.locator("input[name=not_after]").fill("")


def _auditor_reads_only(
    browser: Any, origin: str, token: str, elsewhere: list[str], tmp_path: Path
) -> None:
    page = _page(browser, origin, elsewhere)
    _sign_in(page, origin, token, "carol (auditor)")
    assert page.locator("#readonly").is_visible()
    page.get_by_role("tab", name="Keys").click()
    page.wait_for_selector("#keys-table td:has-text('owner')")
    issue = page.get_by_role("button", name="Issue key")
    assert issue.is_disabled() and issue.get_attribute("title") == "auditor token: read only"
    owner = page.locator("#keys-table tr", has_text="owner")
    assert owner.get_by_role("button", name="Revoke").is_disabled()
    _shot(page, tmp_path, "console-auditor.png")
