"""Migrations match the models on both databases; the CLI as an operator uses it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from elock_common import pki
from key_provisioner.api.main import create_app
from key_provisioner.core.config import Settings
from key_provisioner.core.crypto import MasterKey
from key_provisioner.core.errors import ConfigError
from key_provisioner.db import models  # noqa: F401
from key_provisioner.db.base import Base
from key_provisioner.db.engine import make_engine
from key_provisioner.db.migrate import current_revision, downgrade, head_revision, upgrade
from tests.key_provisioner.liveserver import env


def test_migrations_produce_exactly_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        downgrade(engine, "base")
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_app_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    settings = Settings(
        master_key=MasterKey.generate(), database_url=f"sqlite:///{tmp_path}/empty.sqlite3"
    )
    with pytest.raises(ConfigError, match="run `elock-keyserver migrate`"):
        create_app(settings)


def _cli(*args: str, key: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = env()
    if key is not None:
        environment["ELOCK_MASTER_KEY"] = key
    environment["ELOCK_KEYSERVER_DATABASE_URL"] = f"sqlite:///{cwd}/ks.sqlite3"
    return subprocess.run(
        [sys.executable, "-m", "key_provisioner.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=60,
    )


def test_cli_tokens_and_errors(tmp_path: Path) -> None:
    key = _cli("master-key", cwd=tmp_path).stdout.strip()
    assert MasterKey.from_text(key, source="test").to_text() == key
    refused = _cli("migrate", cwd=tmp_path)
    assert refused.returncode == 2 and "no master key" in refused.stderr
    serve = _cli("serve", key=key, cwd=tmp_path)
    assert serve.returncode == 2 and "elock-keyserver migrate" in serve.stderr
    assert (
        _cli("migrate", key=key, cwd=tmp_path).stdout.strip()
        == f"database at migration {head_revision()}"
    )
    created = _cli("token", "create", "--role", "auditor", "--name", "dash", key=key, cwd=tmp_path)
    token = created.stdout.strip()
    assert created.returncode == 0 and token.startswith("elk_") and "\n" not in token
    assert "shown only this once" in created.stderr
    listing = _cli("token", "list", key=key, cwd=tmp_path).stdout
    assert "auditor" in listing and "dash" in listing and token not in listing
    token_id = listing.split()[0]
    assert _cli("token", "revoke", token_id, key=key, cwd=tmp_path).returncode == 0
    assert "revoked" in _cli("token", "list", key=key, cwd=tmp_path).stdout
    missing = _cli("token", "revoke", "00000000-0000-0000-0000-000000000000", key=key, cwd=tmp_path)
    assert missing.returncode == 2 and "no API token" in missing.stderr
    bad_role = _cli("token", "create", "--role", "root", key=key, cwd=tmp_path)
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr


def test_migrate_works_from_the_installed_package_alone(tmp_path: Path) -> None:
    """What a wheel holds: the packages setuptools finds, their .py files only."""
    from setuptools import find_packages

    root = Path(__file__).resolve().parents[2]
    packages = find_packages(str(root), include=["key_provisioner*", "elock_common*"])
    assert {"key_provisioner.migrations", "key_provisioner.migrations.versions"} <= set(packages)
    site = tmp_path / "site"
    for package in packages:
        source = root / package.replace(".", "/")
        target = site / package.replace(".", "/")
        target.mkdir(parents=True)
        for module in source.glob("*.py"):
            (target / module.name).write_bytes(module.read_bytes())
    environment = {k: v for k, v in env().items() if k != "PYTHONPATH"}
    environment |= {
        "PYTHONPATH": str(site),
        "ELOCK_MASTER_KEY": MasterKey.generate().to_text(),
        "ELOCK_KEYSERVER_DATABASE_URL": f"sqlite:///{tmp_path}/ks.sqlite3",
    }
    done = subprocess.run(
        [sys.executable, "-s", "-m", "key_provisioner.cli", "migrate"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"database at migration {head_revision()}"
    where = subprocess.run(
        [sys.executable, "-s", "-c", "import key_provisioner.migrations as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=60,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr


def test_0003_pushes_again_the_lists_locks_confirmed_above_the_server(database_url: str) -> None:
    """Before 0003 a lock answering a version above the server's was taken as confirmed
    and got no more pushes; those locks get their list numbered above theirs, due now."""
    import datetime as dt
    import uuid

    import sqlalchemy as sa

    from key_provisioner.db.base import UtcDateTime

    engine = make_engine(database_url)
    locks = sa.table(
        "locks",
        *(sa.column(name, sa.Uuid()) for name in ["id"]),
        *(sa.column(name, sa.String()) for name in ["name", "host", "lock_tag"]),
        *(sa.column(name, UtcDateTime()) for name in ["enrolled_at", "retired_at", "push_due_at"]),
        *(
            sa.column(name, sa.BigInteger())
            for name in ["port", "revocation_version", "confirmed_version", "push_attempts"]
        ),
        sa.column("audit_cursor", sa.BigInteger()),
    )
    now = dt.datetime.now(dt.UTC)
    ahead, in_sync, retired = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        downgrade(engine, "0002")
        with engine.begin() as connection:
            for lock_id, versions, retired_at in [
                (ahead, (1, 5), None),
                (in_sync, (2, 2), None),
                (retired, (1, 5), now),
            ]:
                connection.execute(
                    locks.insert().values(
                        id=lock_id,
                        name=str(lock_id),
                        host="127.0.0.1",
                        port=5684,
                        lock_tag="abcd",
                        enrolled_at=now,
                        retired_at=retired_at,
                        revocation_version=versions[0],
                        confirmed_version=versions[1],
                        push_attempts=0,
                        audit_cursor=0,
                    )
                )
        upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    locks.c.id,
                    locks.c.revocation_version,
                    locks.c.confirmed_version,
                    locks.c.push_due_at,
                    sa.column("audit_generation"),
                )
            ).all()
        found = {row[0]: tuple(row[1:]) for row in rows}
        assert found[ahead] == (6, 5, now, 0)  # due since its enrolment: now
        assert found[in_sync] == (2, 2, None, 0)
        assert found[retired] == (1, 5, None, 0)  # a retired lock gets no pushes
    finally:
        engine.dispose()


def _keyserver_config(tmp_path: Path, push: dict[str, str]) -> Path:
    """A migrated SQLite database, and a config file for it with these ``[push]`` files."""
    (tmp_path / "master.key").write_text(MasterKey.generate().to_text())
    base = (
        f'[keyserver]\ndatabase_url = "sqlite:///{tmp_path}/ks.sqlite3"\n'
        'master_key_file = "master.key"\nport = 8080\n\n[worker]\nenabled = false\n'
    )
    (tmp_path / "migrate.toml").write_text(base)
    migrate = [sys.executable, "-m", "key_provisioner.cli", "--config"]
    done = subprocess.run(
        [*migrate, str(tmp_path / "migrate.toml"), "migrate"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = tmp_path / "keyserver.toml"
    config.write_text(
        base + "\n[push]\n" + "".join(f'{name} = "{path}"\n' for name, path in push.items())
    )
    return config


def _run_serve(config: Path, *args: str, timeout: float = 30) -> tuple[int | None, str, float]:
    """``serve`` in its own process group; (exit status or None if still running, stderr,
    seconds). A server still running at the timeout is killed, with its workers."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "key_provisioner.cli", "--config", str(config), "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stderr, time.monotonic() - started
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        return None, stderr, time.monotonic() - started


@pytest.mark.parametrize("broken", ["missing", "not a certificate"])
def test_serve_with_workers_refuses_push_files_in_the_parent(tmp_path: Path, broken: str) -> None:
    """With --workers above 1, a [push] file that does not load made each worker process
    fail with a traceback while the parent kept running: systemd saw an active service."""
    paths = pki.init_pki(tmp_path / "pki")
    user = paths.racs_users["keyserver"]
    push = {
        "racs_client_cert": str(user.cert),
        "racs_client_key": str(user.key),
        "racs_ca": str(paths.racs_ca.cert),
        "tls2_cert": str(paths.key_server.cert),
        "tls2_key": str(paths.key_server.key),
        "se_issuer_ca": str(paths.se_issuer_ca.cert),
    }
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnonsense\n")
    bad = tmp_path / ("gone.pem" if broken == "missing" else "bad.pem")
    config = _keyserver_config(tmp_path, push | {"racs_client_cert": str(bad)})
    status, stderr, seconds = _run_serve(config, "--workers", "2", "--port", "0")
    assert status == 2, (status, stderr)
    assert seconds < 20
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("elock-keyserver: push.racs_client_cert"), lines


def test_serve_port_0_listens_on_a_free_port_and_says_which(tmp_path: Path) -> None:
    from tests.key_provisioner.liveserver import Process

    config = _keyserver_config(tmp_path, {})
    server = Process(
        ["key_provisioner.cli", "--config", str(config), "serve", "--port", "0"],
        tmp_path / "serve.log",
        "Uvicorn running on",
    )
    server.start()
    try:
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", server.log.read_text())
        assert found, server.log.read_text()
        port = int(found.group(1))
        assert port not in (0, 8080)  # not keyserver.port: --port 0 asks for any free port
        answer = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10)
        assert answer.status_code == 200
    finally:
        server.stop()
    for wrong in ("-1", "65536", "http"):
        status, stderr, _ = _run_serve(config, "--port", wrong)
        assert status == 2 and "--port: must be 0 (any free port) to 65535" in stderr, stderr
