"""The key server's /metrics, /healthz and /readyz through the app, on SQLite and PostgreSQL.

The fleet gauges come from the database, so what the API did must show in
them at once; request counters are labelled by route template, never by an id.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from elock_testkit.metrics import parse_samples
from key_provisioner.observability.collector import FLEET, PER_LOCK
from key_provisioner.observability.metrics import HEARTBEAT
from tests.key_provisioner.conftest import Api

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")


def test_health_answers_without_a_token(admin: Api) -> None:
    client = admin.client
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "worker": "disabled"}


def test_metrics_need_a_token_and_show_what_the_api_did(admin: Api, auditor: Api) -> None:
    assert admin.client.get("/metrics").status_code == 401
    lock = admin.enrol("front-door")["lock"]
    se = admin.register_se()
    key = admin.issue(lock["id"], se["id"])
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    admin.get(f"/locks/{lock['id']}")

    response = auditor.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse_samples(response.text)
    revoked = [v for (name, labels), v in samples.items()
               if name == "elock_keyserver_keys" and ("state", "revoked") in labels]  # fmt: skip
    assert revoked == [1]
    assert samples[("elock_keyserver_locks", ())] == 1
    behind = ("elock_keyserver_lock_revocation_versions_behind", (("lock", "front-door"),))
    assert samples[behind] == 1
    front_door = (("lock", "front-door"),)
    lag = samples[("elock_keyserver_lock_revocation_unconfirmed_seconds", front_door)]
    assert 0 <= lag < 60
    assert samples[("elock_keyserver_database_up", ())] == 1
    ok = ("elock_keyserver_http_requests_total",
          (("method", "GET"), ("route", "/locks/{lock_id}"), ("status", "200")))  # fmt: skip
    assert samples[ok] >= 1
    unauthenticated = ("elock_keyserver_http_requests_total",
                       (("method", "GET"), ("route", "unmatched"), ("status", "401")))  # fmt: skip
    assert samples[unauthenticated] >= 1
    for name, labels in samples:  # bounded labels: no id of any kind
        assert not any(_UUID.search(value) for _, value in labels), (name, labels)
        assert key["key_id"] not in str(labels)


def test_every_fleet_gauge_is_described() -> None:
    assert "elock_keyserver_lock_connected" in PER_LOCK and "elock_keyserver_keys" in FLEET


def test_request_id_is_echoed_or_made(admin: Api) -> None:
    given = admin.client.get("/healthz")  # health answers carry none: they are not logged
    assert "x-request-id" not in given.headers
    sent = admin.client.get("/locks", headers={**admin.headers, "X-Request-ID": "abc-123"})
    assert sent.headers["x-request-id"] == "abc-123"
    odd = admin.client.get("/locks", headers={**admin.headers, "X-Request-ID": "a b c"})
    assert re.fullmatch(r"[0-9a-f]{16}", odd.headers["x-request-id"])


def test_readyz_says_when_the_database_is_not_migrated(admin: Api, database_url: str) -> None:
    if not database_url.startswith("sqlite:///"):
        with admin.client.app.state.elock.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    else:
        path = Path(database_url.removeprefix("sqlite:///"))
        admin.client.app.state.elock.engine.dispose()  # type: ignore[attr-defined]
        path.unlink()
        path.touch()
    ready = admin.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert ready.json()["checks"]["migrations"] != "ok"


def test_worker_heartbeat_counts_from_start() -> None:
    assert HEARTBEAT.since > 0


def test_serve_keeps_metrics_in_a_private_directory_or_empties_the_given_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from key_provisioner.cli import MULTIPROC_ENV, metrics_dir

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with metrics_dir() as private:
        assert os.environ[MULTIPROC_ENV] == str(private) and private.is_dir()
    assert not private.exists() and MULTIPROC_ENV not in os.environ

    given = tmp_path / "prom"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    with metrics_dir() as used:
        assert used == given and not (given / "counter_123.db").exists()
    assert (given / "keep.txt").exists()


def test_every_way_the_worker_records_a_card_push_has_an_outcome() -> None:
    """``metrics.card_push`` names outcomes by the recorder the worker passes."""
    from key_provisioner.observability.metrics import _CARD_OUTCOMES
    from key_provisioner.services import provisioning
    from key_provisioner.worker import Worker

    recorders = [provisioning.record_done, provisioning.record_failed, Worker._record_busy,
                 Worker._record_retry]  # fmt: skip
    assert {r.__name__ for r in recorders} == set(_CARD_OUTCOMES)


@pytest.mark.peer
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stopped_server_leaves_no_metrics_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    """SIGTERM (systemd's stop) still removes the private multiprocess directory."""
    from elock_testkit.liveserver import start_keyserver

    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = start_keyserver(tmp_path / "ks", f"sqlite:///{tmp_path}/ks.sqlite3", worker=False)
    try:
        if workers == "2":  # the same, under uvicorn's multiprocess supervisor
            server.process.stop()
            server.process.args = [*server.process.args, "--workers", "2"]
            server.process.ready = "Application startup complete"
            server.process.start()
        names = [p.name for p in private_tmp.iterdir()]
        assert len(names) == 1 and names[0].startswith("elock-keyserver-metrics-"), names
    finally:
        server.process.stop()
    assert list(private_tmp.iterdir()) == []
