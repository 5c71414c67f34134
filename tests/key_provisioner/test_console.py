"""The admin console in Debian's headless Chromium, against ``elock-keyserver serve`` (issue 18).

Every request to another origin is refused and recorded. An admin signs in, issues a
key (its PSK shown once, then gone, also after a reload), revokes it with a reason and
watches its push reach ``removed``, reads who did it in the admin audit; a problem from
the API shows as a readable message; an auditor sees the same pages with every changing
button disabled. The screenshots of docs/ are made here (``ELOCK_UPDATE_DOCS=1``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from elock_testkit.browser import confined_page
from elock_testkit.liveserver import LiveKeyServer, Process, env, start_keyserver
from elock_testkit.ports import free_udp_port
from elock_testkit.waiting import wait_for
from tests.conftest import require_tool
from tests.key_provisioner.test_docs_offline import CHROMIUM_ARGS
from tests.key_provisioner.test_e2e_real_lock import install_lock, open_door

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
    """A tab whose requests to any other origin, and uncaught script errors, are
    refused or recorded in *elsewhere* (a test ends with it empty)."""
    viewport = {"width": 1280, "height": 820}
    return confined_page(
        browser, origin, elsewhere, viewport=viewport, accept_downloads=True, script_errors=True
    )


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
            offline = page.locator("#locks-table tr", has_text="front-door")
            assert offline.get_attribute("class") == "warn"
            assert "not connected" in (offline.get_attribute("title") or "")
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
    for name in ("Enrol lock", "Register card"):
        changing = page.locator(f"button:text-is('{name}')")
        assert changing.is_disabled(), name
        assert changing.get_attribute("title") == "auditor token: read only"
    _shot(page, tmp_path, "console-auditor.png")


# Shown as text everywhere, never as markup (and the CSP would not run it anyway).
HOSTILE = "<img src=x onerror=window.pwned=1>"


def test_a_real_lock_enrolled_in_the_console_reports_a_refusal_it_shows(tmp_path: Path) -> None:
    """Enrol (the bundle downloaded from the page installs the lock), register a card,
    issue, open (granted), revoke, wait for the lock to hold the list, open (refused),
    and read both in the key's audit once the lock has uploaded them."""
    chromium = require_tool("chromium")
    require_tool("coap-client-openssl")
    from playwright.sync_api import sync_playwright

    server = start_keyserver(tmp_path / "ks", f"sqlite:///{tmp_path}/ks.sqlite3", worker=False)
    locks: list[Process] = []
    elsewhere: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = _page(browser, server.url, elsewhere)
            _sign_in(page, server.url, server.token, "tests (admin)")
            _enrol(page, HOSTILE, "192.0.2.20", 5684)
            page.get_by_role("button", name="Done, forget it").first.click()
            port = free_udp_port()
            locks.append(_start_lock(_enrol_and_download(page, tmp_path, port), tmp_path / "front"))
            locks.append(_start_skewed_lock(server, tmp_path / "back"))
            _locks_show_their_sync_state(page, tmp_path)
            _register_card(page)
            key = _issue(page)
            uri = f"coaps://127.0.0.1:{port}/lock"
            assert "opened" in (out := open_door(key, uri)), out
            _revoke_in_console(page)
            in_sync = _lock_cell("front-door", "v1 / v1, in sync")
            _until(page, lambda: _tab(page, "Locks"), in_sync, "the lock holds the new list")
            out = open_door(key, uri)
            assert "4.01" in out and "key revoked" in out and "opened" not in out, out
            _audit_shows_the_refusal(page, key["key_id"])
            _shot(page, tmp_path, "console-audit.png")
            assert page.locator("img").count() == 0 and page.evaluate("window.pwned") is None
            browser.close()
    finally:
        for lock in locks:
            lock.stop()
        server.process.stop()
    assert elsewhere == []


def _start_lock(
    bundle: dict[str, Any],
    directory: Path,
    wrapper: list[str] | None = None,
    max_clock_skew: float = 300.0,
) -> Process:
    directory.mkdir(parents=True)
    config = install_lock(bundle, directory / "lock")
    bound = "max_clock_skew_seconds = "
    config.write_text(config.read_text().replace(f"{bound}300.0", f"{bound}{max_clock_skew}"))
    serve = ["lock_server.cli", "serve", "--config", str(config)]
    lock = Process(serve, directory / "lock.log", "listening on", wrapper=wrapper or [])
    lock.start()
    return lock


def _start_skewed_lock(server: LiveKeyServer, directory: Path) -> Process:
    """back-door, enrolled through the API, its clock two days ahead (faketime), and its
    bound on that 2 hours (the console must warn at the lock's own bound, not at 300 s)."""
    headers = {"Authorization": f"Bearer {server.token}"}
    body = {"name": "back-door", "host": "127.0.0.1", "port": free_udp_port()}
    enrolled = httpx.post(server.url + "/locks", json=body, headers=headers, timeout=10)
    assert enrolled.status_code == 201, enrolled.text
    skewed = ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "DONT_FAKE_MONOTONIC=1"]
    skewed += [require_tool("faketime"), "-f", "+2d"]
    return _start_lock(enrolled.json()["bundle"], directory, skewed, max_clock_skew=7200.0)


def _locks_show_their_sync_state(page: Any, tmp_path: Path) -> None:
    """front-door connected and in time; back-door 2 days ahead and the hostile one
    never seen are yellow rows that say why."""

    def refresh() -> None:
        _tab(page, "Locks")

    _until(page, refresh, _lock_cell("front-door", "yes"), "front-door connected")
    _until(page, refresh, _lock_cell("back-door", "2.0 days ahead"), "back-door's clock")
    rows = page.locator("#locks-table tbody tr")
    shown = {r.locator("td").first.inner_text(): r for r in rows.all()}
    assert shown["front-door"].get_attribute("class") != "warn"
    assert "clock 2.0 days ahead: beyond 7200 s" in str(shown["back-door"].get_attribute("title"))
    assert shown[HOSTILE].get_attribute("title") == "not connected to the key server"
    assert shown[HOSTILE].locator("td").nth(5).inner_text() == "not measured yet"
    for name in ("back-door", HOSTILE):
        assert shown[name].get_attribute("class") == "warn"
    _shot(page, tmp_path, "console-locks.png")


def _tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _lock_cell(lock: str, text: str) -> str:
    return f"#locks-table tr:has-text('{lock}') td:text-is('{text}')"


def _until(page: Any, refresh: Callable[[], None], selector: str, what: str) -> None:
    """Refresh the view until *selector* shows (each look waits up to a second for it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    def shown() -> bool:
        refresh()
        try:
            page.wait_for_selector(selector, timeout=1000)
        except PlaywrightTimeout:
            return False
        return True

    wait_for(shown, 30, what)


def _enrol_form(page: Any, name: str, host: str, port: int) -> None:
    form = page.locator("#enrol-form")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=host]").fill(host)
    form.locator("input[name=port]").fill(str(port))
    form.get_by_role("button", name="Enrol lock").click()


def _enrol(page: Any, name: str, host: str, port: int) -> None:
    _tab(page, "Locks")
    _enrol_form(page, name, host, port)
    page.wait_for_selector("#enrolled:not([hidden])")
    row = page.locator("#locks-table tr", has_text=name)
    row.wait_for()
    assert row.locator("td").first.inner_text() == name


def _enrol_and_download(page: Any, tmp_path: Path, port: int) -> dict[str, Any]:
    """Enrol front-door: a problem first, then its bundle, downloaded once and forgotten."""
    _tab(page, "Locks")
    _enrol_form(page, "front-door", "0.0.0.0", port)
    page.wait_for_selector("#error:has-text('host 0.0.0.0 is unspecified')")
    assert page.locator("#enrolled").is_hidden()
    _enrol(page, "front-door", "127.0.0.1", port)
    command = page.locator("#bundle-command").inner_text()
    assert command == "elock-lock init --dir mylock --bundle front-door.bundle.json"
    _shot(page, tmp_path, "console-enrol.png")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download front-door.bundle.json").click()
    download = download_info.value
    assert download.suggested_filename == "front-door.bundle.json"
    path = tmp_path / "front-door.bundle.json"
    download.save_as(path)
    bundle: dict[str, Any] = json.loads(path.read_text())
    assert bundle["format"] == "elock-lock-bundle/1" and bundle["port"] == port
    assert bundle["secret"] not in page.content()
    _leaving_asks_first(page)
    _enrol_form(page, "side-door", "127.0.0.1", 5684)  # would replace the only copy: refused
    page.wait_for_selector("#error:has-text('First download front-door.bundle.json')")
    page.locator("#enrol-form").evaluate("form => form.reset()")
    page.get_by_role("button", name="Done, forget it").first.click()
    assert page.locator("#enrolled").is_hidden() and page.evaluate("enrolledBundle") is None
    assert "front-door.bundle.json" not in page.content()
    storage = page.evaluate("[Object.keys(sessionStorage), localStorage.length, document.cookie]")
    assert storage == [["elock-token"], 0, ""]
    return bundle


def _leaving_asks_first(page: Any) -> None:
    """A reload while the bundle is unsaved asks; staying keeps the bundle."""
    page.on("dialog", lambda dialog: dialog.dismiss())  # "stay on this page"
    with page.expect_event("dialog") as asked:
        page.evaluate("setTimeout(() => location.reload())")
    assert asked.value.type == "beforeunload"
    assert page.evaluate("enrolledBundle !== null") and page.locator("#enrolled").is_visible()


def _register_card(page: Any) -> None:
    """Two problems read as messages, then a card whose host dials in, its label hostile."""
    _tab(page, "Cards")
    form = page.locator("#card-form")
    form.locator("input[name=seid]").fill("not a seid")
    form.get_by_role("button", name="Register card").click()
    page.wait_for_selector("#error:has-text('Request validation failed: invalid: body.seid')")
    form.locator("input[name=seid]").fill("console-se")
    form.locator("input[name=label]").fill(HOSTILE)
    form.locator("textarea[name=certificate_pem]").fill("-----BEGIN CERTIFICATE-----\nAAAA")
    form.get_by_role("button", name="Register card").click()
    page.wait_for_selector("#error:has-text('not one PEM X.509 certificate')")
    form.locator("textarea[name=certificate_pem]").fill("")
    form.get_by_role("button", name="Register card").click()
    row = page.locator("#cards-table tr", has_text="console-se")
    row.wait_for()
    assert page.locator("#error").is_hidden()
    assert row.locator("td").nth(1).inner_text() == HOSTILE
    assert row.locator("td").nth(2).inner_text() == "its key host"
    assert form.locator("input[name=racs_server]").is_disabled()
    form.locator("select[name=delivery]").select_option(label="a RACS server")
    form.locator("input[name=seid]").fill("racs-se")
    form.locator("input[name=racs_server]").fill("racs.example.net:7443")
    form.get_by_role("button", name="Register card").click()
    racs = page.locator("#cards-table tr", has_text="racs-se")
    racs.wait_for()
    assert racs.locator("td").nth(2).inner_text() == "RACS server racs.example.net:7443"


def _issue(page: Any) -> dict[str, str]:
    _tab(page, "Keys")
    form = page.locator("#issue-form")
    form.locator("select[name=lock_id]").select_option(label="front-door")
    form.locator("select[name=secure_element_id]").select_option(label=f"console-se ({HOSTILE})")
    form.locator("input[name=label]").fill("visitor")
    form.get_by_role("button", name="Issue key").click()
    page.wait_for_selector("#issued:not([hidden])")
    key = {
        "identity": page.locator("#issued-identity").inner_text(),
        "psk": page.locator("#issued-psk").inner_text(),
    }
    row = page.locator("#keys-table tr", has_text="visitor")
    row.wait_for()
    key["key_id"] = row.locator("td").nth(1).inner_text()
    page.locator("#issued").get_by_role("button", name="Done, forget it").click()
    assert key["psk"] not in page.content()
    return key


def _revoke_in_console(page: Any) -> None:
    row = page.locator("#keys-table tr", has_text="visitor")
    row.get_by_role("button", name="Revoke").click()
    row.get_by_label("revoke reason").fill("left the company")
    row.get_by_role("button", name="Confirm revoke").click()
    page.wait_for_selector("#keys-table td:has-text('revoked: left the company')")


def _audit_shows_the_refusal(page: Any, key_id: str) -> None:
    def refresh() -> None:
        _tab(page, "Keys")
        row = page.locator("#keys-table tr", has_text="visitor")
        row.get_by_role("button", name="Audit").click()

    _until(page, refresh, "#audit-table td:text-is('key revoked')", "the refusal in the audit")
    page.wait_for_selector(f"#audit-scope:has-text('key {key_id}')")
    rows = [r.split("\t") for r in page.locator("#audit-table tbody tr").all_inner_texts()]
    assert [(r[1], r[2], r[4], r[5], r[6]) for r in rows] == [
        ("front-door", key_id, "open", "refused", "key revoked"),
        ("front-door", key_id, "open", "granted", "opened"),
    ]


ATTACKER = "http://attacker.test"  # answered inside the browser: no packet leaves


def test_a_page_on_another_origin_cannot_use_the_console(tmp_path: Path) -> None:
    """Another origin's script cannot frame the console, and cannot read the API even
    holding a valid token (no CORS); the token is never a cookie the browser would add."""
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    server = start_keyserver(tmp_path / "ks", f"sqlite:///{tmp_path}/ks.sqlite3", worker=False)
    try:
        preflight = httpx.options(
            server.url + "/locks",
            headers={
                "Origin": ATTACKER,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert not any(h.startswith("access-control-") for h in preflight.headers)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_context().new_page()
            hostile = f'<!doctype html><iframe id="f" src="{server.url}/console"></iframe>'
            page.route("**/*", lambda route: _attacker_or_key_server(route, server.url, hostile))
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{ATTACKER}/")  # returns after the iframe's load event too
            # Chromium fetched the console, refused to show it in the frame
            # (frame-ancestors 'none'), so its script never ran there.
            assert f"{server.url}/console" in requested
            assert not [url for url in requested if "/docs-assets/" in url]
            assert [f.url for f in page.frames][1] == "chrome-error://chromewebdata/"
            read = page.evaluate(
                """async ([url, token]) => {
                    const headers = {Authorization: "Bearer " + token};
                    try {
                        return "read: " + await (await fetch(url + "/tokens/me", {headers})).text();
                    } catch (error) { return "refused: " + error.name; }
                }""",
                [server.url, server.token],
            )
            assert read == "refused: TypeError"
            browser.close()
    finally:
        server.process.stop()


def _attacker_or_key_server(route: Any, key_server: str, hostile: str) -> None:
    """The attacker's page is answered in the browser; only the key server is reached."""
    url = route.request.url
    if url == f"{ATTACKER}/":
        route.fulfill(body=hostile, content_type="text/html")
    elif url.startswith(key_server + "/"):
        route.continue_()
    else:
        route.abort()
