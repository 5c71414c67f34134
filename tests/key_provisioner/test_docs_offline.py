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

import httpx
import pytest

# tests/key_provisioner/test_console.py takes the flags from here
from elock_testkit.browser import CHROMIUM_ARGS as CHROMIUM_ARGS
from elock_testkit.browser import chromium, confined_page
from elock_testkit.liveserver import start_keyserver
from elock_testkit.waiting import wait_for
from tests.conftest import require_tool

pytestmark = pytest.mark.peer  # headless Chromium and the server as a process


def test_docs_render_offline_under_a_strict_csp(tmp_path: Path) -> None:
    executable = require_tool("chromium")
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
        with chromium(executable) as browser:
            viewport = {"width": 1280, "height": 900}
            page = confined_page(browser, server.url, elsewhere, viewport=viewport, console=console)
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
