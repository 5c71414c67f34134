"""End to end on loopback: the installed commands, a real key server and a real lock.

``elock-keyserver migrate`` / ``token create`` / ``serve``; a lock enrolled
through the API and installed from its bundle alone (``elock-lock init
--bundle``), which dials the key server's ``/sync/lock``; a key issued through
the API opens the door through libcoap's ``coap-client-openssl``; a revoke
reaches the lock within a second; a key revoked while the lock is off is
refused on the very first try after the lock is back; the lock's audit rows
reach the API once each. (tests/network runs the same story through a NAT.)
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from elock_testkit.liveserver import Process, run_module, start_keyserver
from elock_testkit.ports import free_udp_port
from elock_testkit.waiting import wait_for
from tests.conftest import require_tool

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture
def keyserver(tmp_path: Path, database_url: str) -> Iterator[httpx.Client]:
    server = start_keyserver(tmp_path / "keyserver", database_url, worker=False)
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            yield client
    finally:
        server.process.stop()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def open_door(key: dict[str, Any], uri: str, wrapper: list[str] | None = None) -> str:
    """One coap-client run; what it printed (its exit status means nothing)."""
    exe = require_tool("coap-client-openssl")
    args = [exe, "-m", "post", "-B", "5", "-u", key["identity"], "-k", key["psk"], uri]
    done = subprocess.run([*(wrapper or []), *args], capture_output=True, text=True, timeout=20)
    return done.stdout + done.stderr


def install_lock(bundle: dict[str, Any], directory: Path) -> Path:
    """``elock-lock init --bundle``: all a lock needs. Returns its config."""
    path = directory.parent / "bundle.json"
    path.write_text(json.dumps(bundle))
    run_module("lock_server.cli", "init", "--dir", str(directory), "--bundle", str(path))
    config = directory / "lock.toml"
    text = config.read_text().replace("open_seconds = 5.0", "open_seconds = 0.2")
    config.write_text(text.replace("ping_seconds = 20.0", "ping_seconds = 2.0"))
    return config


def test_issue_open_revoke_refuse_with_the_real_lock(
    keyserver: httpx.Client, tmp_path: Path
) -> None:
    require_tool("coap-client-openssl")
    api = keyserver
    port = free_udp_port()
    enrolled = _ok(
        api.post("/locks", json={"name": "e2e-door", "host": "127.0.0.1", "port": port}), 201
    )
    lock_id = enrolled["lock"]["id"]
    assert enrolled["bundle"]["sync_url"].endswith("/sync/lock")
    config = install_lock(enrolled["bundle"], tmp_path / "lock")
    lock = Process(
        ["lock_server.cli", "serve", "--config", str(config)], tmp_path / "lock.log", "listening on"
    )
    uri = f"coaps://127.0.0.1:{port}/lock"
    lock.start()
    try:
        wait_for(lambda: _ok(api.get(f"/locks/{lock_id}"))["connected"], 10, "lock connected")
        se = _ok(
            api.post("/secure-elements", json={"seid": "e2e-se", "racs_server": "127.0.0.1:7443"}),
            201,
        )
        body = {"lock_id": lock_id, "secure_element_id": se["id"], "label": "e2e"}
        first = _ok(api.post("/keys", json=body), 201)
        second = _ok(api.post("/keys", json=body), 201)
        assert "opened" in open_door(first, uri)

        # Revoke: the lock refuses the key within one second of the answer.
        _ok(api.post(f"/keys/{first['id']}/revoke", json={"reason": "lost"}))
        answered = time.monotonic()
        wait_for(lambda: _ok(api.get(f"/locks/{lock_id}"))["revocation"]["in_sync"], 1.0, "ack")
        out = open_door(first, uri)
        assert time.monotonic() - answered < 1.5
        assert "4.01" in out and "key revoked" in out and "opened" not in out, out
        shown = _ok(api.get(f"/locks/{lock_id}"))
        assert shown["revocation"]["confirmed_version"] == 1 == shown["revocation"]["version"]
        assert shown["connected"] and shown["last_seen_at"] is not None
        assert abs(shown["clock_offset_seconds"]) < 2

        # Revoked while the lock is off: refused on the very first try once it is back.
        lock.stop()
        wait_for(lambda: not _ok(api.get(f"/locks/{lock_id}"))["connected"], 10, "disconnect")
        _ok(api.post(f"/keys/{second['id']}/revoke"))
        lock.start()
        out = open_door(second, uri)
        assert "key revoked" in out and "opened" not in out, out

        # The lock's audit rows reach the API, each once.
        def audited() -> list[dict[str, Any]] | None:
            rows = _ok(api.get(f"/locks/{lock_id}/audit", params={"limit": 100}))["items"]
            return rows if len(rows) >= 3 else None

        rows = wait_for(audited, 10, "audit rows")
        seen = [(r["key_id"], r["outcome"], r["reason"]) for r in rows if r["action"] == "open"]
        assert sorted(seen) == sorted(
            [
                (first["key_id"], "granted", "opened"),
                (first["key_id"], "refused", "key revoked"),
                (second["key_id"], "refused", "key revoked"),
            ]
        )
    finally:
        lock.stop()


def test_a_lock_two_days_off_refuses_time_bounded_keys_until_its_clock_is_right(
    keyserver: httpx.Client, tmp_path: Path
) -> None:
    api = keyserver
    port = free_udp_port()
    enrolled = _ok(
        api.post("/locks", json={"name": "skewed", "host": "127.0.0.1", "port": port}), 201
    )
    lock_id = enrolled["lock"]["id"]
    config = install_lock(enrolled["bundle"], tmp_path / "lock")
    skewed = [
        "env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "DONT_FAKE_MONOTONIC=1",
        require_tool("faketime"), "-f", "+2d",
    ]  # fmt: skip
    serve = ["lock_server.cli", "serve", "--config", str(config)]
    lock = Process(serve, tmp_path / "lock.log", "listening on", wrapper=skewed)
    uri = f"coaps://127.0.0.1:{port}/lock"
    lock.start()
    try:
        shown = wait_for(
            lambda: (s := _ok(api.get(f"/locks/{lock_id}")))["connected"] and s, 10, "connected"
        )
        assert abs(shown["clock_offset_seconds"] - 2 * 86400) < 60
        assert shown["max_clock_skew_seconds"] == 300.0  # the lock's own bound, as it said
        se = _ok(api.post("/secure-elements", json={"seid": "skew-se", "racs_server": "h:1"}), 201)
        now = time.time()
        today = {
            "lock_id": lock_id,
            "secure_element_id": se["id"],
            "not_before": _iso(now - 3600),
            "not_after": _iso(now + 86400),
        }
        key = _ok(api.post("/keys", json=today), 201)
        out = open_door(key, uri)
        assert "4.03" in out and "lock clock is 2.0 days ahead of the key server's" in out, out
        status = json.loads(
            run_module("lock_server.cli", "status", "--config", str(config), "--json")
        )
        assert abs(status["sync"]["clock_offset"] + 2 * 86400) < 60

        # The clock is set right (NTP came up): the next start measures it again.
        lock.stop()
        lock.wrapper = []
        lock.start()
        out = open_door(key, uri)
        assert "opened" in out, out
    finally:
        lock.stop()


def _iso(when: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat()
