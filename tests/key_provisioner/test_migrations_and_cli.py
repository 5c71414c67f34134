"""Migrations match the models on both databases; the CLI as an operator uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

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
    assert _cli("migrate", key=key, cwd=tmp_path).stdout.strip() == "database at migration 0002"
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
    assert done.stdout.strip() == "database at migration 0002"
    where = subprocess.run(
        [sys.executable, "-s", "-c", "import key_provisioner.migrations as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=60,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
