"""``elock-phone``: the phone web app, served by the key host itself.

The page works with no server behind it but this process: it lists the keys
in the card and opens through the same ``open_door`` as ``coap-open``. It
listens on loopback by default, and any web page in the same browser can reach
a loopback port, so two guards stand before every route:

- ``HostGuard`` (before routing, static files included): the ``Host`` must be
  one of the names this app was started for (loopback names and ``--host``,
  with the port). DNS rebinding gives an attacker's page a same-origin view of
  127.0.0.1 under the attacker's own name: that name is refused here with 421,
  so the page cannot read this app, nor call it. An ``Origin``, when sent, must
  be one of those names too (403).
- A per-launch secret: the page gets it inside ``index.html`` (only its own
  origin can read that) and sends it as ``X-ELock`` on every API call. A
  cross-site request can neither read it nor add the header without a CORS
  preflight, which this app never grants. Both guards stop browsers only: a
  peer on the network writes any ``Host`` it likes and reads any page. So when
  the app listens beyond loopback (``page_secret=False``) the page does not
  carry the secret: ``elock-phone`` prints a pairing address with it in the
  fragment (``#pair=``), which browsers never send, and the page keeps it in
  the tab's ``sessionStorage``.

Every answer also carries a Content-Security-Policy with ``frame-ancestors
'none'`` (and ``X-Frame-Options: DENY``): a page elsewhere that framed the app
could lay its own bait over the Open button and have the user tap it
(clickjacking); the secret and the Host check do not help there, since the
framed page is the app's own.

"Update keys" (and the page's start) runs the same sync as ``coap-open
--sync``: ``POST /api/sync`` does it, ``GET /api/sync`` tells its stage while
it runs; the card is reached in a thread and its channel closed after the sync.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from key_client.carrier import open_door
from key_client.channel import KeyInfo, OpenChannel
from key_client.errors import (
    CardError,
    KeyHostError,
    NoSuchKeyError,
    OutcomeUnknownError,
    PinRequiredError,
    RefusedError,
    SyncError,
    UnreachableError,
    WrongPinError,
)
from key_client.sync import SyncChannel, sync_card

STATIC = resources.files("key_client.phone") / "static"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
SESSION_PLACEHOLDER = "{{ELOCK_SESSION}}"
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
    "/sw.js": ("sw.js", "text/javascript"),
    "/manifest.webmanifest": ("manifest.webmanifest", "application/manifest+json"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
    "/icon-192.png": ("icon-192.png", "image/png"),
    "/icon-512.png": ("icon-512.png", "image/png"),
}


class SyncProgress:
    """The sync in progress (if any) and the last one's outcome, for the page to poll."""

    def __init__(self) -> None:
        self.running = False
        self.stage = ""
        self.last: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"running": self.running, "stage": self.stage, "last": self.last}


async def run_sync(
    connect: Callable[[], object], progress: SyncProgress, timeout: float
) -> dict[str, Any]:
    """One sync of the card with its key server; every card call in a thread."""

    def stage(name: str) -> None:
        progress.stage = name

    channel = None
    try:
        stage("reading the card")
        channel = await asyncio.to_thread(connect)
        if not isinstance(channel, SyncChannel):
            raise SyncError("this card channel cannot sync")
        key_server = await asyncio.to_thread(channel.key_server)
        result = await sync_card(channel.relay, key_server, timeout=timeout, progress=stage)
    except KeyHostError as exc:
        return {"status": "sync-failed", "message": str(exc)}
    finally:
        if isinstance(channel, SyncChannel):
            await asyncio.to_thread(channel.close)
    return {"status": "synced", "message": result.message, **vars(result)}


class OpenRequest(BaseModel):
    id: int = Field(ge=0, le=0xFFFF)
    pin: str | None = Field(default=None, min_length=4, max_length=12, pattern=r"^[0-9]+$")


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches this machine only (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower().rstrip(".") == "localhost"


def pairing_url(host: str, port: int, session: str) -> str:
    """The address to open once for an app that listens beyond loopback: the secret is
    in the fragment, which a browser never sends, and the page takes it from there."""
    try:
        address = ipaddress.ip_address(host)
        name = "127.0.0.1" if address.is_unspecified else address.compressed
        name = f"[{name}]" if ":" in name else name
    except ValueError:
        name = host.lower().rstrip(".")
    return f"http://{name}:{port}/#pair={session}"


def serving_names(host: str, port: int) -> frozenset[str]:
    """The ``Host`` values this app answers to: loopback names and ``host``, with the port.

    An unspecified listen address (0.0.0.0, ::) names no host: only the loopback
    names are served then, and any other name must be given as ``--host``.
    """
    names = list(LOOPBACK_NAMES)
    try:
        address = ipaddress.ip_address(host)
        if not address.is_unspecified:
            names.append(f"[{address.compressed}]" if address.version == 6 else str(address))
    except ValueError:
        names.append(host.lower().rstrip("."))
    served = {f"{name}:{port}" for name in names}
    if port == 80:  # a browser leaves the default port out of Host and Origin
        served.update(names)
    return frozenset(served)


# The page loads script, styles, images, its manifest and service worker from this
# origin only, and no other site may frame it (clickjacking the Open button).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MAX_BODY = 1024  # bytes: an Open is {"id": N, "pin": "..."}; a sync has no body
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class HostGuard:
    """Refuse, before any routing, a request for a name this app does not serve; give
    every answer (refusals too) the page's security headers."""

    def __init__(self, app: ASGIApp, served: Iterable[str], secret: str) -> None:
        self._app = app
        self._served = frozenset(served)
        self._secret = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self._guard(scope, receive, with_headers)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").lower()
        origin = headers.get("origin")
        if host not in self._served:
            shown = sorted(self._served)
            await _plain(send, 421, f"eLock: Host {host[:100]!r} is not served here "
                                    f"(this app answers to {', '.join(shown)})\n")  # fmt: skip
            return
        if origin is not None and origin.lower() not in {f"http://{n}" for n in self._served}:
            await _plain(send, 403, f"eLock: cross-origin request from {origin[:100]!r}\n")
            return
        if scope["path"].startswith("/api/"):
            # Before the route reads a body: whoever can connect must not make the app
            # buffer one without the secret, nor a large one with it.
            marker = headers.get("x-elock", "").encode("latin-1")
            if not hmac.compare_digest(marker, self._secret):
                await _plain(
                    send, 403, "eLock: missing or wrong X-ELock header (reload the page)\n"
                )
                return
            if "transfer-encoding" in headers:  # a length the server cannot bound up front
                await _plain(send, 411, "eLock: send a request body with a Content-Length\n")
                return
            length = headers.get("content-length", "0")
            if not length.isdigit() or int(length) > MAX_BODY:
                await _plain(send, 413, f"eLock: a request body is at most {MAX_BODY} bytes\n")
                return
        await self._app(scope, receive, send)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def create_app(
    connect: Callable[[], OpenChannel],
    *,
    timeout: float = 20.0,
    sync_timeout: float = 60.0,
    served: Iterable[str] = serving_names("127.0.0.1", 8480),
    session: str | None = None,
    page_secret: bool = True,
) -> FastAPI:
    """``connect`` gives a fresh channel to the card for each request; ``served``
    are the Host values accepted (``serving_names``); ``session`` the per-launch
    secret the page must send back (a new random one by default), written into
    ``index.html`` only with ``page_secret`` (never for an app that listens beyond
    loopback: whoever connects could read it there)."""
    app = FastAPI(title="eLock", docs_url=None, redoc_url=None, openapi_url=None)
    token = session or secrets.token_urlsafe(32)
    app.add_middleware(HostGuard, served=served, secret=token)
    one_at_a_time = asyncio.Lock()
    progress = SyncProgress()

    _add_pages(app, token if page_secret else "")
    # Every /api/ route below is reached only with the secret: HostGuard checks it
    # before routing (and before any body is read).

    @app.get("/api/keys")
    async def keys() -> Any:
        async with one_at_a_time:  # the card runs one thing at a time
            try:
                return await asyncio.to_thread(_listing, connect)
            except CardError as exc:
                return JSONResponse({"status": "card", "message": str(exc)}, status_code=503)

    @app.post("/api/open")
    async def open_(body: OpenRequest) -> Any:
        async with one_at_a_time:
            return await _open(connect, body, timeout)

    @app.get("/api/sync")
    async def sync_state() -> Any:
        return progress.as_json()

    @app.post("/api/sync")
    async def sync() -> Any:
        """Update keys: the card's host dials its key server (``key_client.sync``)."""
        async with one_at_a_time:
            progress.running, progress.stage = True, "starting"
            try:
                progress.last = await run_sync(connect, progress, sync_timeout)
            finally:
                progress.running = False
        return progress.last

    return app


def _add_pages(app: FastAPI, page_token: str) -> None:
    """The page and its files; ``page_token`` goes into index.html ("" when it must not)."""
    for path, (name, media) in _FILES.items():
        handler = _index(page_token) if name == "index.html" else _static(name, media)
        app.add_api_route(path, handler, methods=["GET"], include_in_schema=False)


def _listing(connect: Callable[[], OpenChannel]) -> list[dict[str, Any]]:
    """The card's keys; blocking card I/O, so the app runs it in a thread."""
    channel = connect()
    try:
        return [vars(k) for k in channel.keys()]
    finally:
        channel.close()


def _chosen_key(channel: OpenChannel, body: OpenRequest) -> KeyInfo:
    """The key by its container id, its PIN verified if it needs one (card I/O: a thread)."""
    key = next((k for k in channel.keys() if k.container_id == body.id), None)
    if key is None:
        raise NoSuchKeyError(f"no key {body.id} in the card")
    if key.pin_required:
        if body.pin is None:
            raise PinRequiredError("this key needs the PIN")
        channel.verify_pin(body.pin)
    return key


async def _open(connect: Callable[[], OpenChannel], body: OpenRequest, timeout: float) -> Any:
    """One Open from the page; the card's channel is closed after it, whatever happened."""
    channel: OpenChannel | None = None
    try:
        channel = await asyncio.to_thread(connect)
        key = await asyncio.to_thread(_chosen_key, channel, body)
        outcome = await open_door(channel, key, timeout=timeout)
    except KeyHostError as exc:
        return _failure(exc)
    finally:
        if channel is not None:
            await asyncio.to_thread(channel.close)
    return {
        "status": "opened",
        "message": outcome.message or "opened",
        "code": outcome.code,
        "elapsed_ms": round(outcome.elapsed * 1000),
    }


def _failure(exc: KeyHostError) -> JSONResponse:
    body: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, RefusedError):
        body.update(status="refused", code=exc.code, message=exc.reason)
    elif isinstance(exc, UnreachableError):
        body["status"] = "unreachable"
    elif isinstance(exc, OutcomeUnknownError):
        body.update(status="unknown", message=OutcomeUnknownError.advice, detail=str(exc))
    elif isinstance(exc, PinRequiredError):
        body["status"] = "pin"
    elif isinstance(exc, WrongPinError):
        body.update(status="pin", tries_left=exc.tries_left)
    elif isinstance(exc, CardError):
        body["status"] = "card"
    else:
        body["status"] = "error"
    return JSONResponse(body, status_code=200)


def _index(token: str) -> Callable[[], Response]:
    """The page with this launch's secret in it; never cached, so a restart's new one wins."""

    def serve() -> Response:
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        return Response(
            page.replace(SESSION_PLACEHOLDER, token),
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    return serve


def _static(name: str, media: str) -> Callable[[], Response]:
    def serve() -> Response:
        path = STATIC / name
        if name.endswith(".png"):
            return Response(path.read_bytes(), media_type=media)
        return Response(
            path.read_text(encoding="utf-8"),
            media_type=media,
            headers={"Cache-Control": "no-cache"},
        )

    return serve


__all__ = ["FileResponse", "create_app"]
