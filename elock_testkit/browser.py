"""Headless Chromium (Debian's) for tests of our web pages, driven by Playwright.

No network beyond loopback: the flags turn off what Chromium would fetch on its own
(component updates, sync, QUIC probes), and ``confined_page`` aborts every request
that leaves the origin under test, and lists it, so a test can say "nothing left".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(executable: str, *extra_args: str) -> Iterator[Any]:
    """A headless browser, closed (and Playwright stopped) on every exit path."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            browser.close()


def confined_page(
    browser: Any,
    origin: str,
    elsewhere: list[str],
    *,
    viewport: dict[str, int],
    console: list[str] | None = None,
    accept_downloads: bool = False,
    script_errors: bool = False,
) -> Any:
    """A page that may load only from ``origin``; other URLs are aborted and noted in
    ``elsewhere`` (with uncaught script errors too, when ``script_errors``); console
    messages go to ``console`` when given."""
    context = browser.new_context(viewport=viewport, accept_downloads=accept_downloads)

    def only_the_origin(route: Any) -> None:
        if route.request.url.startswith(origin + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_origin)
    page = context.new_page()
    if console is not None:
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    if script_errors:
        page.on("pageerror", lambda error: elsewhere.append(f"script error: {error}"))
    return page
