"""API tokens expire, and say when they were last used (issue 14, item 8 and item 9).

Against the server as an operator runs it: ``token create --expires`` and ``serve``
in subprocesses, on SQLite and PostgreSQL. Time passing is simulated by moving a
token's expiry into the past in the database, so no test waits for a clock.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from elock_testkit.liveserver import env, start_keyserver
from key_provisioner.db.base import utcnow
from key_provisioner.db.engine import make_engine
from key_provisioner.db.models import ApiToken
from key_provisioner.services import tokens
from tests.key_provisioner.conftest import Api, TestClient, make_token


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "key_provisioner.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )


def _line(listing: str, token_id: str) -> str:
    return next(line for line in listing.splitlines() if line.startswith(token_id))


@pytest.mark.peer
def test_expired_tokens_are_refused_by_the_running_server(
    tmp_path: Path, database_url: str
) -> None:
    server = start_keyserver(tmp_path / "ks", database_url, worker=False)
    config = tmp_path / "ks" / "keyserver.toml"
    try:
        made = _cli(config, "token", "create", "--role", "auditor", "--expires", "30d")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        token_id = re.search(r"token (\S+) \(auditor, expires (\S+ \S+)\)", made.stderr)
        assert token_id, made.stderr
        expected = utcnow() + dt.timedelta(days=30)
        shown = dt.datetime.strptime(token_id.group(2), "%Y-%m-%d %H:%MZ").replace(tzinfo=dt.UTC)
        assert abs(shown - expected) < dt.timedelta(minutes=2)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            works = http.get("/locks", headers={"Authorization": f"Bearer {token}"})
            assert works.status_code == 200, works.text
            listing = _cli(config, "token", "list").stdout
            line = _line(listing, token_id.group(1))
            assert "active" in line and f"expires {token_id.group(2)}" in line
            assert re.search(r"last used \S+ \S+ from 127\.0\.0\.1", line), line
            # A month passes.
            engine = make_engine(database_url)
            with engine.begin() as connection:
                connection.execute(
                    update(ApiToken)
                    .where(ApiToken.id == uuid.UUID(token_id.group(1)))
                    .values(expires_at=utcnow() - dt.timedelta(seconds=1))
                )
            engine.dispose()
            expired = http.get("/locks", headers={"Authorization": f"Bearer {token}"})
            unknown = http.get("/locks", headers={"Authorization": "Bearer elk_" + "A" * 43})
        assert expired.status_code == unknown.status_code == 401
        assert expired.headers["content-type"] == "application/problem+json"
        # Nothing tells an expired token from one that never existed.
        assert expired.json() == unknown.json()
        assert expired.headers["www-authenticate"] == unknown.headers["www-authenticate"]
        assert "expired" in _line(_cli(config, "token", "list").stdout, token_id.group(1))
        assert f"refused API token {token_id.group(1)}" in server.process.log.read_text()
    finally:
        server.process.stop()
    assert token not in server.process.log.read_text()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = _config(tmp_path_factory.mktemp("ks"))
    assert _cli(config, "migrate").returncode == 0
    return config


@pytest.mark.slow
@pytest.mark.peer  # elock-keyserver as a process, as an admin runs it
@pytest.mark.parametrize(
    ("when", "why"),
    [
        ("0s", "no time at all"),
        ("0m", "no time at all"),
        ("0d0h", "no time at all"),
        ("2000-01-01", "in the past"),
        ("2020-05-01T10:00", "in the past"),
        ("-5d", "neither a duration"),
        ("soon", "neither a duration"),
        ("", "neither a duration"),
        ("99999999d", "too far in the future"),
    ],
)
def test_token_create_refuses_an_expiry_that_never_works(
    migrated: Path, when: str, why: str
) -> None:
    config = migrated
    done = _cli(config, "token", "create", "--role", "admin", f"--expires={when}")
    assert done.returncode == 2 and why in done.stderr, done.stderr
    assert done.stdout == ""
    assert _cli(config, "token", "list").stdout == ""


@pytest.mark.slow
@pytest.mark.peer  # elock-keyserver as a process, as an admin runs it
def test_expires_takes_durations_dates_and_times(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert _cli(config, "migrate").returncode == 0
    for when, expiry in [
        ("2099-12-31", "2100-01-01 00:00Z"),  # through that day
        ("2099-06-30T18:30", "2099-06-30 18:30Z"),
        ("2099-06-30T18:30+02:00", "2099-06-30 16:30Z"),
    ]:
        done = _cli(config, "token", "create", "--role", "admin", "--expires", when)
        assert done.returncode == 0 and f"expires {expiry}" in done.stderr, done.stderr
    week = _cli(config, "token", "create", "--role", "admin", "--expires", "1w2d12h")
    shown = re.search(r"expires (\S+ \S+)\)", week.stderr)
    assert shown, week.stderr
    moment = dt.datetime.strptime(shown.group(1), "%Y-%m-%d %H:%MZ").replace(tzinfo=dt.UTC)
    assert abs(moment - utcnow() - dt.timedelta(days=9, hours=12)) < dt.timedelta(minutes=2)
    forever = _cli(config, "token", "create", "--role", "auditor")
    assert "never expires" in forever.stderr
    listing = _cli(config, "token", "list").stdout.splitlines()
    assert len(listing) == 5
    assert "expires never" in listing[-1] and "last used never" in listing[-1]


def _config(directory: Path) -> Path:
    from key_provisioner.core.crypto import MasterKey

    (directory / "master.key").write_text(MasterKey.generate().to_text())
    config = directory / "keyserver.toml"
    config.write_text(
        f'[keyserver]\ndatabase_url = "sqlite:///{directory}/ks.sqlite3"\n'
        'master_key_file = "master.key"\n'
    )
    return config


def test_last_use_is_noted_once_a_minute_at_most(client: TestClient) -> None:
    api = Api(client, make_token(client, "admin", "ops"))
    assert api.get("/locks").status_code == 200
    with client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        row = next(t for t in tokens.list_tokens(session) if t.name == "ops")
        first = row.last_used_at
        assert first is not None and row.last_used_from == "testclient"
        assert utcnow() - first < dt.timedelta(seconds=30)
    assert api.get("/locks").status_code == 200
    with client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        row = next(t for t in tokens.list_tokens(session) if t.name == "ops")
        assert row.last_used_at == first  # no write per request


def test_an_expiry_in_the_past_is_refused_by_the_service(client: TestClient) -> None:
    from key_provisioner.core.errors import InvalidRequestError

    with client.app.state.elock.sessions() as session:  # type: ignore[attr-defined]
        with pytest.raises(InvalidRequestError, match="not in the future"):
            tokens.create(session, tokens.Role.ADMIN, "x", expires_at=utcnow())
        assert tokens.list_tokens(session) == []
