"""``/docs``, ``/redoc`` and the admin console, from packaged assets, under a strict CSP.

FastAPI's defaults load Swagger UI and ReDoc from a public CDN: a blank page on a
closed network, and third-party script next to an admin's bearer token anywhere
else. The assets come from the ``fastapi-offline`` wheel (Swagger UI, ReDoc, no
copies kept in this repository), served under ``/docs-assets/``; the pages are
ours, with no inline script, and their Content-Security-Policy lets them load
nothing from any other origin. ``/console`` is a static page whose script calls
the API with the token the admin types (kept in the tab's sessionStorage); the
page itself holds no data, so it needs no token.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ASSETS = "/docs-assets"
# 'unsafe-inline' for styles only: Swagger UI and ReDoc set style attributes. ReDoc
# runs its search in a worker made from a blob: URL, which is this origin's own.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_PATHS = ("/docs", "/redoc", "/console")

SWAGGER_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>eLock key server: API</title>
<link rel="icon" href="{ASSETS}/vendor/favicon.png">
<link rel="stylesheet" href="{ASSETS}/vendor/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="{ASSETS}/vendor/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/elock/docs.js"></script>
</body></html>
"""

REDOC_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>eLock key server: API reference</title>
<link rel="icon" href="{ASSETS}/vendor/favicon.png">
</head><body>
<redoc spec-url="/openapi.json" hide-download-button></redoc>
<script src="{ASSETS}/vendor/redoc.standalone.js"></script>
</body></html>
"""


def vendor_assets() -> Path:
    """Swagger UI's and ReDoc's files, inside the installed ``fastapi_offline`` package."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def own_assets() -> Path:
    return Path(__file__).with_name("static")


def is_public(path: str) -> bool:
    """Paths that need no token: the API description, its pages and their assets."""
    return path in ("/openapi.json", *PAGE_PATHS) or path.startswith(ASSETS + "/")


class ContentSecurityPolicy:
    """Adds the CSP (and no-sniff, no-referrer) to every answer under the docs paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_public(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI) -> None:
    """For an app made with ``docs_url=None, redoc_url=None``."""
    app.mount(f"{ASSETS}/vendor", StaticFiles(directory=vendor_assets()), name="docs-vendor")
    app.mount(f"{ASSETS}/elock", StaticFiles(directory=own_assets()), name="docs-elock")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(SWAGGER_PAGE)

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return HTMLResponse(REDOC_PAGE)

    console_page = (own_assets() / "console.html").read_text(encoding="utf-8")

    @app.get("/console", include_in_schema=False)
    def console() -> HTMLResponse:
        return HTMLResponse(console_page)

    app.add_middleware(ContentSecurityPolicy)
