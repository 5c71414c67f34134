"""End to end: the installed commands, a real key server and a real lock process.

``elock-keyserver migrate`` / ``token create`` / ``serve``; a lock enrolled
through the API and installed from its bundle with ``elock-lock init
--bundle``; a key issued through the API opens the door through libcoap's
``coap-client-openssl``; a revoke through the API reaches the lock within a
second and the API shows the lock's acknowledgement; with the lock stopped,
the revocation arrives once it is back.
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
    server = start_keyserver(tmp_path / "keyserver", database_url, worker=True)
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            yield client
    finally:
        server.process.stop()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _open(key: dict[str, Any], port: int) -> str:
    """One coap-client run; what it printed (its exit status means nothing)."""
    exe = require_tool("coap-client-openssl")
    done = subprocess.run(
        [
            exe,
            "-m",
            "post",
            "-B",
            "5",
            "-u",
            key["identity"],
            "-k",
            key["psk"],
            f"coaps://127.0.0.1:{port}/lock",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout + done.stderr


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
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(enrolled["bundle"]))
    lock_dir = tmp_path / "lock"
    run_module("lock_server.cli", "init", "--dir", str(lock_dir), "--bundle", str(bundle))
    text = (lock_dir / "lock.toml").read_text().replace("open_seconds = 5.0", "open_seconds = 0.2")
    (lock_dir / "lock.toml").write_text(text)
    lock = Process(
        ["lock_server.cli", "serve", "--config", str(lock_dir / "lock.toml")],
        tmp_path / "lock.log",
        "listening on",
    )
    lock.start()
    try:
        se = _ok(
            api.post("/secure-elements", json={"seid": "e2e-se", "racs_server": "127.0.0.1:7443"}),
            201,
        )
        body = {"lock_id": lock_id, "secure_element_id": se["id"], "label": "e2e"}
        first = _ok(api.post("/keys", json=body), 201)
        second = _ok(api.post("/keys", json=body), 201)
        assert "opened" in _open(first, port)
        assert "opened" in _open(second, port)

        # Revoke: the lock refuses the key within one second.
        _ok(api.post(f"/keys/{first['id']}/revoke", json={"reason": "lost"}))
        revoked_at = time.monotonic()
        wait_for(lambda: _ok(api.get(f"/locks/{lock_id}"))["revocation"]["in_sync"], 1.0, "ack")
        out = _open(first, port)
        assert time.monotonic() - revoked_at < 1.0
        assert "4.01" in out and "key revoked" in out and "opened" not in out, out
        shown = _ok(api.get(f"/locks/{lock_id}"))
        assert shown["revocation"]["confirmed_version"] == 1 == shown["revocation"]["version"]
        assert shown["revocation"]["confirmed_at"] is not None
        assert shown["last_seen_at"] is not None

        # With the lock stopped, the revocation waits, and arrives when it is back.
        lock.stop()
        _ok(api.post(f"/keys/{second['id']}/revoke"))
        failing = wait_for(
            lambda: (s := _ok(api.get(f"/locks/{lock_id}")))["revocation"]["attempts"] >= 1 and s,
            10,
            "a failed push",
        )
        assert failing["revocation"]["in_sync"] is False
        assert failing["revocation"]["last_error"]
        lock.start()
        wait_for(lambda: _ok(api.get(f"/locks/{lock_id}"))["revocation"]["in_sync"], 10, "delivery")
        assert _ok(api.get(f"/locks/{lock_id}"))["revocation"]["confirmed_version"] == 2
        for key in (first, second):
            out = _open(key, port)
            assert "key revoked" in out and "opened" not in out, out

        # The lock's audit log reaches the API, per key.
        def audited() -> list[dict[str, Any]] | None:
            rows = _ok(api.get(f"/keys/{second['id']}/audit"))["items"]
            return rows if len(rows) >= 2 else None

        rows = wait_for(audited, 10, "audit rows")
        outcomes = {(r["action"], r["outcome"]) for r in rows}
        assert {("open", "granted"), ("open", "refused")} <= outcomes
        assert any(r["action"] == "push revocations" for r in _ok(api.get("/audit"))["items"])
    finally:
        lock.stop()
