"""Fixtures: the API suite runs once on SQLite and once on a real PostgreSQL.

The PostgreSQL cluster is started once per test session; each test gets its
own database, copied from a migrated template (fast). SQLite tests copy a
migrated template file. A missing PostgreSQL fails the test, never skips it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import Response

from elock_testkit.pgcluster import PgCluster, find_bin
from key_provisioner.api.main import create_app
from key_provisioner.core.config import Settings, WorkerSettings
from key_provisioner.core.crypto import MasterKey
from key_provisioner.db.engine import make_engine
from key_provisioner.db.migrate import upgrade
from key_provisioner.services import tokens
from key_provisioner.services.admin_audit import Actor
from tests.conftest import require_tool

with warnings.catch_warnings():
    # Starlette 1.x asks for the httpx2 package; httpx still works and is what we have.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

_counter = itertools.count()
# PostgreSQL is a real peer: its variants stay out of the fast run (-m "not peer").
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.peer)]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    initdb = find_bin("initdb") or require_tool("initdb")
    require_tool(initdb)
    if os.geteuid() == 0:
        require_tool("runuser")  # PostgreSQL will not run as root
    cluster = PgCluster.start(initdb)
    try:
        url = cluster.create_database("elock_template")
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "keyserver.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "keyserver.sqlite3"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"elock_test_{next(_counter)}"
    url = cluster.create_database(name, template="elock_template")
    try:
        yield url
    finally:
        cluster.drop_database(name)


# What the worker tests run with (they override ``worker_settings`` with it): quick polls
# and retries, no pull on a timer (a pull happens after a push, or when a test asks).
FAST_WORKER = WorkerSettings(
    enabled=True,
    poll_seconds=0.2,
    coap_timeout=2.0,
    retry_base=0.2,
    retry_max=1.0,
    audit_seconds=3600,
)


@pytest.fixture
def worker_settings() -> WorkerSettings:
    """API tests run without the worker; worker tests override this fixture."""
    return WorkerSettings(enabled=False)


@pytest.fixture
def settings(database_url: str, worker_settings: WorkerSettings) -> Settings:
    return Settings(
        master_key=MasterKey.generate(), database_url=database_url, worker=worker_settings
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def make_token(client: TestClient, role: str, name: str = "") -> str:
    with client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        _, token = tokens.create(session, tokens.Role(role), name or role)
    return token


def service_actor(client: TestClient, name: str = "service-tests") -> Actor:
    """An admin token's actor, for tests that call a changing service directly."""
    with client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        row, _ = tokens.create(session, tokens.Role.ADMIN, name)
    return Actor(row.id, "tests")


class Api:
    """A TestClient that sends one token, and checks answers as it goes."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        return self.client.request(method, url, headers=self.headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.request("POST", url, **kwargs)

    def ok(self, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.request(method, url, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    # The usual set-up steps.
    def enrol(self, name: str = "front-door", port: int = 5684) -> Any:
        return self.ok(
            "POST", "/locks", 201, json={"name": name, "host": "127.0.0.1", "port": port}
        )

    def register_se(self, seid: str = "8933150319000000001") -> Any:
        return self.ok(
            "POST", "/secure-elements", 201, json={"seid": seid, "racs_server": "127.0.0.1:7443"}
        )

    def issue(self, lock_id: str, se_id: str, **fields: Any) -> Any:
        body = {"lock_id": lock_id, "secure_element_id": se_id, **fields}
        return self.ok("POST", "/keys", 201, json=body)


@pytest.fixture
def admin(client: TestClient) -> Api:
    return Api(client, make_token(client, "admin"))


@pytest.fixture
def auditor(client: TestClient) -> Api:
    return Api(client, make_token(client, "auditor"))
