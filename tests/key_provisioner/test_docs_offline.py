"""``/docs`` and ``/redoc`` render with the network cut to the key server (issue 18).

Debian's headless Chromium, driven by Playwright, against ``elock-keyserver serve``:
every request the pages make to any other origin is refused and recorded, and the
pages must still render every operation. The Content-Security-Policy is checked as
sent and as the browser applies it (no violation reported).
"""

from __future__ import annotations

import re
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from elock_testkit.liveserver import start_keyserver
from elock_testkit.waiting import wait_for
from tests.conftest import require_tool

pytestmark = pytest.mark.peer  # headless Chromium and the server as a process

# As the phone app's browser tests launch it (tests/key_client/test_phone_browser.py).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
CHROMIUM_ARGS += ["--disable-quic", "--disable-background-networking"]
CHROMIUM_ARGS += ["--disable-component-update"]


def _offline_page(browser: Any, origin: str, elsewhere: list[str], console: list[str]) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def only_the_key_server(route: Any) -> None:
        if route.request.url.startswith(origin + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_key_server)
    page = context.new_page()
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    return page


def test_docs_render_offline_under_a_strict_csp(tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    server = start_keyserver(tmp_path / "ks", f"sqlite:///{tmp_path}/ks.sqlite3", worker=False)
    try:
        spec = httpx.get(server.url + "/openapi.json").json()
        operations = sum(len(item) for item in spec["paths"].values())
        for path in ("/docs", "/redoc"):
            with urllib.request.urlopen(server.url + path, timeout=10) as response:
                csp = response.headers["Content-Security-Policy"]
                html = response.read().decode()
            assert "default-src 'none'" in csp and "script-src 'self'" in csp, csp
            assert not re.search(r"(src|href)=\"(https?:)?//", html), html
            assert "<script>" not in html  # nothing inline for the CSP to allow
        elsewhere: list[str] = []
        console: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = _offline_page(browser, server.url, elsewhere, console)
            page.goto(server.url + "/docs")
            # polled from here: a string evaluated in the page is eval, which the CSP forbids
            wait_for(lambda: page.locator(".opblock").count() == operations, 20, "every operation")
            assert page.locator(".opblock-summary-path", has_text="/admin-audit").count() == 1
            page.screenshot(path=str(tmp_path / "docs.png"))
            page.goto(server.url + "/redoc")
            page.locator("h2", has_text="Issue a key for a lock and a secure element").wait_for(
                timeout=20000
            )
            assert page.locator("h2", has_text="Changes made through the API").count() == 1
            browser.close()
        assert elsewhere == []  # nothing even tried to leave the machine past the CSP
        # The one load the CSP had to stop: ReDoc's "powered by" logo from its CDN.
        blocked = {
            match.group(1)
            for line in console
            if (match := re.search(r"Loading the \w+ '([^']+)' violates", line))
        }
        assert blocked <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, console
        others = [line for line in console if "Content Security Policy" in line]
        assert len(others) == len([line for line in console if "logo-mini.svg" in line]), console
    finally:
        server.process.stop()
    shutil.rmtree(tmp_path / "ks", ignore_errors=True)
