"""HTTP side: request metrics and ids (middleware), ``/metrics``, ``/healthz``, ``/readyz``.

``/metrics`` is an API route like the others, so it sits behind the token
middleware: Prometheus sends an auditor token (``authorization`` in the scrape
config). One port, one TLS front (nginx), one access rule, rather than a
second listener to firewall; and any worker answering a scrape reports every
worker of its replica (multiprocess mode, see :mod:`.metrics`).

``/healthz`` and ``/readyz`` answer before the token check (a load balancer
or systemd has no token) and say nothing secret: ``/healthz`` that the
process serves, ``/readyz`` whether it should get traffic (database reachable,
migrations current, the worker's rounds recent).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from elock_common.logfmt import REQUEST_ID
from key_provisioner.api.state import AppState
from key_provisioner.db.migrate import current_revision, head_revision
from key_provisioner.observability import metrics
from key_provisioner.observability.collector import FleetCollector

log = logging.getLogger("key_provisioner.access")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")


class ObservedMiddleware:
    """Outermost layer: health answers, a request id, one metric sample and log line."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in HEALTH_PATHS:
            await _health(scope["path"], self.state)(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = REQUEST_ID.set(request_id)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    @staticmethod
    def _observe(scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "other"
        metrics.REQUESTS.labels(method, route, str(status)).inc()
        metrics.REQUEST_SECONDS.labels(method, route).observe(seconds)
        log.info(  # with --log-format json, this line replaces uvicorn's access line
            "%s %s %d %.1f ms", method, route, status, seconds * 1000,
            extra={"method": method, "route": route, "status": status,
                   "duration_ms": round(seconds * 1000, 1)},
        )  # fmt: skip


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def _request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a plain short token, else a fresh one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return str(text)
    return secrets.token_hex(8)


def _health(path: str, state: AppState) -> Any:
    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        if path == "/healthz":
            response: Response = JSONResponse({"status": "alive"})
        else:
            checks = await run_in_threadpool(readiness, state)
            ready = all(v in ("ok", "disabled") for v in checks.values())
            response = JSONResponse(
                {"status": "ready" if ready else "not ready", "checks": checks},
                status_code=200 if ready else 503,
            )
        await response(scope, receive, send)

    return answer


def readiness(state: AppState) -> dict[str, str]:
    """What ``/readyz`` checks, each "ok", "disabled" or why not (no secrets)."""
    checks: dict[str, str] = {}
    try:
        current = current_revision(state.engine)
        checks["database"] = "ok"
        head = head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current}, code needs {head}"
    except Exception as exc:
        checks["database"] = f"unreachable ({exc.__class__.__name__})"
        checks["migrations"] = "unknown"
    checks["worker"] = _worker_health(state)
    return checks


def _worker_health(state: AppState) -> str:
    settings = state.settings.worker
    if not settings.enabled:
        return "disabled"
    if state.worker is None:
        return "not running"
    # A round may wait on every lock visit and card push it started: allow that, twice.
    push_timeout = state.push_clients.settings.timeout if state.push_clients else 30.0
    allowed = 2 * (settings.poll_seconds + 6 * settings.coap_timeout + 2 * push_timeout + 10)
    beat = metrics.HEARTBEAT
    age = time.monotonic() - (beat.since if beat.last_round is None else beat.last_round)
    return "ok" if age <= allowed else f"no round finished for {age:.0f} s"


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    state: AppState = request.app.state.elock
    body = await run_in_threadpool(exposition, state)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def exposition(state: AppState) -> bytes:
    """This replica's counters (every worker of it) and the fleet's gauges."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    fleet = CollectorRegistry()
    fleet.register(FleetCollector(state.sessions))
    return body + generate_latest(fleet)


def install(app: FastAPI) -> None:
    """Add the routes and the middleware (outermost: it sees the token check's 401s too)."""
    state: AppState = app.state.elock
    app.include_router(router)
    app.add_middleware(ObservedMiddleware, state=state)
    if os.environ.get(MULTIPROC_ENV) and not _CLEANUP:
        _CLEANUP.append(os.getpid())
        atexit.register(_process_ended, os.getpid())


_CLEANUP: list[int] = []


def _process_ended(pid: int) -> None:
    """This worker's live gauges leave the sums (its counters stay: totals never drop)."""
    if os.getpid() == pid:
        mark_process_dead(pid)  # type: ignore[no-untyped-call]
