"""Every error as RFC 9457 problem details, from one place.

Domain errors carry their status and type; request validation errors become
422 problems listing each field, except a body that is not JSON at all (broken
JSON, not UTF-8, another media type): that is 400, as the docs promise.
Starlette's own HTTP errors (unknown path, wrong method) and unexpected
exceptions get ``about:blank`` problems. The
OpenAPI description is rewritten to match: error responses are documented
as ``application/problem+json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from key_provisioner.core.errors import DomainError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_FASTAPI_UNPARSED = "There was an error parsing the body"  # FastAPI's 400 for undecodable bytes


def problem(
    status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any
) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def problem_response(exc: DomainError) -> JSONResponse:
    return problem(exc.status, exc.title, exc.detail, exc.type_uri())


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if exc.status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.detail)
    return problem_response(exc)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if unreadable := _unreadable_body(exc):
        return problem(400, "Bad Request", unreadable)
    errors = [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    return problem(
        422,
        "Request validation failed",
        f"invalid: {where}" if where else "the request is not valid",
        "urn:elock:problem:validation",
        errors=errors,
    )


def _unreadable_body(exc: RequestValidationError) -> str | None:
    """Why the body could not be read as JSON at all, if that is the failure.

    FastAPI reports broken JSON as a validation error (``json_invalid``), and a body
    sent with another media type reaches validation as raw bytes.
    """
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            why = str((err.get("ctx") or {}).get("error", "")) or "not JSON"
            return f"the body is not readable JSON ({why} at position {loc[-1]})"
        if loc == ("body",) and isinstance(err.get("input"), bytes):
            return "the body is not JSON: send it as UTF-8 JSON with Content-Type: application/json"
    return None


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    if exc.status_code == 400 and detail == _FASTAPI_UNPARSED:
        detail = "the body is not readable JSON (not UTF-8, or not text)"
    response = problem(exc.status_code, phrase, detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path.
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE and isinstance(route, BaseRoute):
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return problem(500, "Internal Server Error", "the server failed; see its log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
    app.openapi = _openapi_factory(app)  # type: ignore[method-assign]


def _openapi_factory(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for code, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if code[0] in "45" and "application/json" in content:
                            content[PROBLEM_JSON] = content.pop("application/json")
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
