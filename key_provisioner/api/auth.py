"""The token check every request passes, except the API description itself.

A pure ASGI middleware: it runs before routing, so a request without a valid
token gets 401 whether or not its path, method or body would have been valid.
The token lookup (one indexed query) runs in a worker thread.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from key_provisioner.api.problems import problem_response
from key_provisioner.api.state import AppState
from key_provisioner.core.errors import UnauthenticatedError
from key_provisioner.services import tokens
from key_provisioner.services.tokens import Caller

PUBLIC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class TokenAuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        state: AppState = request.app.state.elock
        try:
            caller = await run_in_threadpool(
                _authenticate, state, _bearer(request), client_address(request)
            )
        except UnauthenticatedError as exc:
            response = problem_response(exc)
            response.headers["WWW-Authenticate"] = 'Bearer realm="elock-keyserver"'
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def client_address(request: Request) -> str:
    """The peer's address as uvicorn saw it (the proxy's ``X-Forwarded-For`` when it
    trusts the proxy, see docs/operations.md), or ``unknown``."""
    return request.client.host if request.client else "unknown"


def _authenticate(state: AppState, token: str | None, client: str) -> Caller:
    with state.sessions() as session:
        return tokens.authenticate(session, token, client=client)


def install(app: Any) -> None:
    app.add_middleware(TokenAuthMiddleware)
