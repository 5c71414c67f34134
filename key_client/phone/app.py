"""``elock-phone``: the phone web app, served by the key host itself.

The page works with no server behind it but this process: it lists the keys
in the card and opens through the same ``open_door`` as ``coap-open``. "Update
keys" (and the page's start) runs the same sync as ``coap-open --sync``:
``POST /api/sync`` does it, ``GET /api/sync`` tells its stage while it runs;
the card is reached in a thread and its channel closed after the sync. It
listens on loopback by default. Because any web page in the same browser
could post to a loopback port, every API call must carry the ``X-ELock``
header (a cross-site request cannot add it without a CORS preflight, which
this app never grants) and a same-origin ``Origin`` when the browser sends one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from key_client.carrier import open_door
from key_client.channel import OpenChannel
from key_client.errors import (
    CardError,
    KeyHostError,
    NoSuchKeyError,
    PinRequiredError,
    RefusedError,
    SyncError,
    UnreachableError,
    WrongPinError,
)
from key_client.sync import SyncChannel, sync_card

STATIC = resources.files("key_client.phone") / "static"
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


def create_app(
    connect: Callable[[], OpenChannel], *, timeout: float = 20.0, sync_timeout: float = 60.0
) -> FastAPI:
    """``connect`` gives a fresh channel to the card for each request."""
    app = FastAPI(title="eLock", docs_url=None, redoc_url=None, openapi_url=None)
    one_at_a_time = asyncio.Lock()
    progress = SyncProgress()

    def guard(request: Request, marker: str | None) -> None:
        if marker != "1":
            raise HTTPException(403, "missing X-ELock header")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
            raise HTTPException(403, "cross-origin request")

    for path, (name, media) in _FILES.items():
        app.add_api_route(path, _static(name, media), methods=["GET"], include_in_schema=False)

    @app.get("/api/keys")
    async def keys(request: Request, x_elock: Annotated[str | None, Header()] = None) -> Any:
        guard(request, x_elock)
        try:
            channel = connect()
            return [vars(k) for k in channel.keys()]
        except CardError as exc:
            return JSONResponse({"status": "card", "message": str(exc)}, status_code=503)

    @app.post("/api/open")
    async def open_(
        body: OpenRequest, request: Request, x_elock: Annotated[str | None, Header()] = None
    ) -> Any:
        guard(request, x_elock)
        async with one_at_a_time:
            try:
                channel = connect()
                key = next((k for k in channel.keys() if k.container_id == body.id), None)
                if key is None:
                    raise NoSuchKeyError(f"no key {body.id} in the card")
                if key.pin_required:
                    if body.pin is None:
                        raise PinRequiredError("this key needs the PIN")
                    channel.verify_pin(body.pin)
                outcome = await open_door(channel, key, timeout=timeout)
            except KeyHostError as exc:
                return _failure(exc)
        return {
            "status": "opened",
            "message": outcome.message or "opened",
            "code": outcome.code,
            "elapsed_ms": round(outcome.elapsed * 1000),
        }

    @app.get("/api/sync")
    async def sync_state(request: Request, x_elock: Annotated[str | None, Header()] = None) -> Any:
        guard(request, x_elock)
        return progress.as_json()

    @app.post("/api/sync")
    async def sync(request: Request, x_elock: Annotated[str | None, Header()] = None) -> Any:
        """Update keys: the card's host dials its key server (``key_client.sync``)."""
        guard(request, x_elock)
        async with one_at_a_time:
            progress.running, progress.stage = True, "starting"
            try:
                progress.last = await run_sync(connect, progress, sync_timeout)
            finally:
                progress.running = False
        return progress.last

    return app


def _failure(exc: KeyHostError) -> JSONResponse:
    body: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, RefusedError):
        body.update(status="refused", code=exc.code, message=exc.reason)
    elif isinstance(exc, UnreachableError):
        body["status"] = "unreachable"
    elif isinstance(exc, PinRequiredError):
        body["status"] = "pin"
    elif isinstance(exc, WrongPinError):
        body.update(status="pin", tries_left=exc.tries_left)
    elif isinstance(exc, CardError):
        body["status"] = "card"
    else:
        body["status"] = "error"
    return JSONResponse(body, status_code=200)


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
