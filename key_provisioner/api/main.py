"""The application factory. Nothing here runs at import time.

``create_app(settings)`` builds the engine, refuses a database that is not
migrated or ``[push]`` files that do not load (``build_state``), and starts the
background worker for the app's lifetime.
``app_from_env`` is what ``uvicorn --factory`` (and ``elock-keyserver serve``)
calls in each worker process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from key_provisioner import observability
from key_provisioner.api import auth, docs, problems
from key_provisioner.api.routes import (
    admin_audit,
    audit,
    card_sync,
    keys,
    locks,
    secure_elements,
    tokens,
)
from key_provisioner.api.state import AppState
from key_provisioner.core.config import Settings, load_settings
from key_provisioner.core.crypto import SecretBox
from key_provisioner.db.engine import make_engine, make_sessions
from key_provisioner.db.migrate import require_current
from key_provisioner.se_push import PushClients
from key_provisioner.sync import endpoint as sync_endpoint
from key_provisioner.worker import Worker

DESCRIPTION = """\
Admin API of the eLock key server: enrol locks, register secure elements, issue
and revoke keys, read the locks' audit logs.

Every request needs an API token (`Authorization: Bearer <token>`, made with
`elock-keyserver token create --role admin|auditor`). Auditor tokens read;
admin tokens also change things, and `/admin-audit` shows which token made each
change, from which address. Errors are RFC 9457 problem details
(`application/problem+json`). Lists are newest first and paginated with the
opaque `next_cursor`. Secrets (a lock's bundle, a key's PSK) are returned once,
by the call that makes them.
"""

TAGS = [
    {"name": "locks", "description": "Enrolled locks and delivery of their revocation lists."},
    {"name": "secure elements", "description": "Secure elements and their RACS servers."},
    {"name": "keys", "description": "Keys: identities bound to a lock and a secure element."},
    {"name": "audit", "description": "The locks' own audit logs, pulled by the server."},
    {"name": "admin audit", "description": "Which API token changed what, and from where."},
]


def build_state(settings: Settings, *, check_migrations: bool = True) -> AppState:
    """Everything the app loads from its settings; a ``ConfigError`` naming the setting
    when something does not load (a database not at this code's migration, ``[push]``
    files that are not certificates and keys)."""
    engine = make_engine(settings.database_url)
    try:
        if check_migrations:
            require_current(engine)
        box = SecretBox(settings.master_key)
        push_clients = PushClients(settings.push) if settings.push is not None else None
    except BaseException:
        engine.dispose()
        raise
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=make_sessions(engine),
        box=box,
        push_clients=push_clients,
    )
    state.notifier.install(state.sessions)
    return state


def check_settings(settings: Settings) -> None:
    """Load what ``create_app`` loads, then let it go: for ``serve``, before uvicorn starts
    processes that would each fail on their own (and be restarted by their parent)."""
    build_state(settings).engine.dispose()


def create_app(settings: Settings, *, check_migrations: bool = True) -> FastAPI:
    state = build_state(settings, check_migrations=check_migrations)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.notifier.start(state.engine, state.sessions)
        if settings.worker.enabled:
            state.worker = Worker(
                state.sessions, state.box, settings.worker, push_clients=state.push_clients
            )
            await state.worker.start()
        try:
            yield
        finally:
            if state.worker is not None:
                await state.worker.stop()
                state.worker = None
            state.notifier.stop()
            state.engine.dispose()

    app = FastAPI(
        title="eLock key server",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # operationId = the route function's name: stable, readable, and what links use.
        generate_unique_id_function=lambda route: route.name,
        docs_url=None,  # api.docs serves them, from packaged assets
        redoc_url=None,
    )
    app.state.elock = state
    routers = (locks.router, secure_elements.router, keys.router, audit.router, admin_audit.router,
               card_sync.router, tokens.router)  # fmt: skip
    for router in routers:
        app.include_router(router)
    app.include_router(sync_endpoint.router)
    problems.install(app)
    docs.install(app)
    auth.install(app)
    observability.install(app)  # outermost: /healthz, /readyz, request metrics
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn key_provisioner.api.main:app_from_env --factory``."""
    return create_app(load_settings())
