"""``/sync/lock`` against a live key server: delivery, and every kind of bad input.

Bad input (malformed messages, wrong or replayed proofs, unknown and retired
lock ids, a second lock claiming an id, floods of connection attempts) gets a
clear refusal, changes nothing, and does not slow a connected lock down.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from elock_common import LockSecret
from elock_common.lock_sync import MAX_MESSAGE, Hello, Proof, decode, encode
from elock_testkit.liveserver import (
    LiveKeyServer,
    Process,
    free_tcp_port,
    start_keyserver,
)
from elock_testkit.synclock import LightLock
from elock_testkit.waiting import wait_for

pytestmark = [pytest.mark.peer, pytest.mark.slow]

SEALED_BEFORE_AUTH = (
    '{"type":"ping","lock_time":1,"clock_offset":null,"seq":1,"mac":"' + "A" * 43 + '"}'
)
SYNC = "max_handshakes = 8\nhandshake_timeout_seconds = 1\nidle_timeout_seconds = 3\n"


@dataclass
class Server:
    live: LiveKeyServer
    api: httpx.Client
    sync_url: str

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.api.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def enrol(self, name: str) -> tuple[str, LockSecret]:
        body = {"name": name, "host": "192.0.2.7", "port": 5684}
        enrolled = self.ok("POST", "/locks", 201, json=body)
        return enrolled["lock"]["id"], LockSecret.from_text(enrolled["bundle"]["secret"])

    def revoke_new_key(self, lock_id: str) -> int:
        """Issue a key and revoke it; the lock's new list version."""
        se = self.ok("GET", "/secure-elements")["items"]
        if not se:
            se = [self.ok("POST", "/secure-elements", 201,
                          json={"seid": "sync-se", "racs_server": "127.0.0.1:7443"})]  # fmt: skip
        body = {"lock_id": lock_id, "secure_element_id": se[0]["id"]}
        key = self.ok("POST", "/keys", 201, json=body)
        self.ok("POST", f"/keys/{key['id']}/revoke")
        version: int = self.ok("GET", f"/locks/{lock_id}")["revocation"]["version"]
        return version


def _server(directory: Path, database_url: str) -> Server:
    live = start_keyserver(directory, database_url, worker=False, sync=SYNC)
    api = httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {live.token}"}, timeout=10
    )
    return Server(live, api, live.url.replace("http://", "ws://") + "/sync/lock")


@contextmanager
def sync_keyserver(directory: Path, database_url: str) -> Iterator[Server]:
    """A key server with ``/sync/lock`` and an API client, stopped at the end."""
    server = _server(directory, database_url)
    try:
        yield server
    finally:
        server.api.close()
        server.live.process.stop()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    with sync_keyserver(tmp_path / "keyserver", database_url) as server:
        yield server


async def _refusal(url: str, frames: list[str | bytes]) -> tuple[str, int | None]:
    """Send ``frames``; the refusal the server answered and its close code."""
    async with connect(url, max_size=None, ping_interval=None) as ws:
        reason = ""
        for frame in frames:
            await ws.send(frame)
        try:
            while True:
                message = decode(await asyncio.wait_for(ws.recv(), 5))
                reason = getattr(message, "reason", reason)
        except ConnectionClosed as closed:
            return reason, closed.rcvd.code if closed.rcvd else None


def _hello(lock_id: str, nonce: bytes = b"n" * 16) -> str:
    return encode(Hello(lock_id, nonce, time.time(), 0, 1, 300.0))


async def test_revocations_reach_a_light_lock_within_a_second(server: Server) -> None:
    lock_id, secret = server.enrol("light")
    lock = LightLock(lock_id, secret)
    await lock.connect(server.sync_url)
    try:
        await asyncio.wait_for(lock.synced.wait(), 5)
        shown = server.ok("GET", f"/locks/{lock_id}")
        assert shown["connected"] and abs(shown["clock_offset_seconds"]) < 2
        version = await asyncio.to_thread(server.revoke_new_key, lock_id)
        answered = time.monotonic()
        await lock.in_sync(version, 1.0)
        assert lock.arrivals[version] - answered < 1.0
        wait_for(lambda: server.ok("GET", f"/locks/{lock_id}")["revocation"]["in_sync"], 2, "ack")
    finally:
        await lock.close()
    wait_for(lambda: not server.ok("GET", f"/locks/{lock_id}")["connected"], 5, "disconnected")


async def test_bad_input_gets_a_clear_refusal_and_changes_nothing(server: Server) -> None:
    lock_id, secret = server.enrol("target")
    bystander_id, bystander_secret = server.enrol("bystander")
    bystander = LightLock(bystander_id, bystander_secret)
    await bystander.connect(server.sync_url)
    await asyncio.wait_for(bystander.synced.wait(), 5)
    before = server.ok("GET", f"/locks/{lock_id}")
    url = server.sync_url

    cases: list[tuple[list[str | bytes], str]] = [
        (["not json"], "not JSON"),
        (['{"type":"hello"}'], "fields wrong"),
        ([b"\x00\x01binary"], "not JSON"),
        (["x" * (MAX_MESSAGE + 1)], "larger than"),
        ([_hello(str(uuid.uuid4()))], "no lock"),
        ([_hello(lock_id), encode(Proof(secrets.token_bytes(32)))], "does not verify"),
        ([_hello(lock_id), _hello(lock_id)], "unexpected hello"),
        ([encode(Proof(b"p" * 32))], "unexpected proof"),
        ([SEALED_BEFORE_AUTH], "fields wrong"),
    ]
    for frames, reason in cases:
        said, code = await _refusal(url, frames)
        assert reason in said and code == 1008, (frames[0][:40], said, code)

    # A recorded hello and proof, replayed on a new connection: the server's nonce is new.
    recorder = LightLock(lock_id, secret)
    await recorder.connect(url)
    await asyncio.wait_for(recorder.synced.wait(), 5)
    assert recorder.session is not None
    await recorder.close()
    wait_for(lambda: not server.ok("GET", f"/locks/{lock_id}")["connected"], 5, "disconnect")
    nonce = b"r" * 16
    proof = encode(Proof(b"q" * 32))  # any proof a recorder could have captured fails
    said, code = await _refusal(url, [_hello(lock_id, nonce), proof])
    assert "does not verify" in said and code == 1008

    after = server.ok("GET", f"/locks/{lock_id}")
    for name in ("revocation", "audit_cursor", "audit_generation", "connected"):
        assert after[name] == before[name] or name == "revocation", name
    assert after["revocation"]["version"] == before["revocation"]["version"]
    assert server.ok("GET", f"/locks/{lock_id}/audit")["items"] == []
    # the bystander never noticed
    assert bystander.closed is None
    version = await asyncio.to_thread(server.revoke_new_key, bystander_id)
    await bystander.in_sync(version, 1.0)
    await bystander.close()


async def test_a_second_lock_with_the_same_id_is_refused(server: Server) -> None:
    lock_id, secret = server.enrol("twin")
    first, second = LightLock(lock_id, secret, ping_seconds=1), LightLock(lock_id, secret)
    await first.connect(server.sync_url)
    await asyncio.wait_for(first.synced.wait(), 5)
    await second.connect(server.sync_url)
    deadline = time.monotonic() + 5
    while second.closed is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert second.closed is not None and "already connected" in second.closed
    assert first.closed is None
    version = await asyncio.to_thread(server.revoke_new_key, lock_id)
    await first.in_sync(version, 1.0)
    await first.close()
    await second.close()


async def test_a_retired_lock_is_refused(server: Server) -> None:
    lock_id, secret = server.enrol("old")
    lock = LightLock(lock_id, secret)
    await lock.connect(server.sync_url)
    await asyncio.wait_for(lock.synced.wait(), 5)
    await asyncio.to_thread(server.ok, "POST", f"/locks/{lock_id}/retire")
    deadline = time.monotonic() + 2
    while lock.closed is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert lock.closed is not None and "retired" in lock.closed
    await lock.close()
    said, code = await _refusal(server.sync_url, [_hello(lock_id)])
    assert "was retired" in said and code == 1008
    assert server.ok("GET", f"/locks/{lock_id}")["connected"] is False


async def test_a_flood_of_connections_is_bounded_and_does_not_slow_a_lock(server: Server) -> None:
    lock_id, secret = server.enrol("steady")
    lock = LightLock(lock_id, secret)
    await lock.connect(server.sync_url)
    await asyncio.wait_for(lock.synced.wait(), 5)
    flood: list[Any] = []
    refused = 0
    try:
        for _ in range(100):  # bounded: 100 silent connections, held open
            try:
                ws = await connect(server.sync_url, ping_interval=None, open_timeout=5)
            except InvalidStatus as exc:
                assert exc.response.status_code == 503
                assert b"busy" in exc.response.body
                refused += 1
                continue
            flood.append(ws)
        version = await asyncio.to_thread(server.revoke_new_key, lock_id)
        answered = time.monotonic()
        await lock.in_sync(version, 1.0)
        assert lock.arrivals[version] - answered < 1.0
        closes = await asyncio.gather(*(_closed_code(ws) for ws in flood))
    finally:
        for ws in flood:
            await ws.close()
        await lock.close()
    # at most max_handshakes waited for a hello (then timed out); the rest were refused at once
    assert refused >= 100 - 8
    assert set(closes) <= {1008}


async def _closed_code(ws: Any) -> int | None:
    try:
        await asyncio.wait_for(ws.recv(), 5)
        await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


async def test_a_revoke_answered_by_one_process_reaches_a_lock_on_another(
    server: Server, tmp_path: Path
) -> None:
    """Two key-server processes on one database: on PostgreSQL LISTEN/NOTIFY carries the
    wake-up; on SQLite (several uvicorn workers on one file) the process's sweep does."""
    config = tmp_path / "keyserver" / "keyserver.toml"
    port = free_tcp_port()
    other = Process(
        ["key_provisioner.cli", "--config", str(config), "serve", "--port", str(port)],
        tmp_path / "other.log",
        "Uvicorn running on",
    )
    other.start()
    try:
        lock_id, secret = server.enrol("across")
        lock = LightLock(lock_id, secret)
        await lock.connect(f"ws://127.0.0.1:{port}/sync/lock")  # process B
        await asyncio.wait_for(lock.synced.wait(), 5)
        for _ in range(3):
            version = await asyncio.to_thread(server.revoke_new_key, lock_id)  # process A
            answered = time.monotonic()
            await lock.in_sync(version, 1.0)
            assert lock.arrivals[version] - answered < 1.0
        await lock.close()
    finally:
        other.stop()


def test_sync_settings_reach_the_bundle(server: Server) -> None:
    enrolled = server.ok("POST", "/locks", 201, json={"name": "b", "host": "192.0.2.8"})
    assert enrolled["bundle"]["sync_url"] == server.sync_url
    assert json.dumps(enrolled["bundle"])


async def test_a_lock_whose_state_was_replaced_gets_the_servers_list(server: Server) -> None:
    """A version from an earlier life: the server's list wins, numbered above the lock's.
    A new audit log (state wiped or restored): a new generation, and the list again."""
    lock_id, secret = server.enrol("reborn")
    await asyncio.to_thread(server.revoke_new_key, lock_id)
    lock = LightLock(lock_id, secret, held=50, audit_log=7)
    await lock.connect(server.sync_url)
    await lock.in_sync(51, 2.0)
    wait_for(lambda: server.ok("GET", f"/locks/{lock_id}")["revocation"]["in_sync"], 2, "ack")
    shown = server.ok("GET", f"/locks/{lock_id}")
    assert shown["revocation"]["version"] == 51 == shown["revocation"]["confirmed_version"]
    assert shown["audit_generation"] == 0
    await lock.close()
    wait_for(lambda: not server.ok("GET", f"/locks/{lock_id}")["connected"], 5, "disconnect")

    wiped = LightLock(lock_id, secret, held=0, audit_log=8)
    await wiped.connect(server.sync_url)
    await wiped.in_sync(52, 2.0)
    shown = server.ok("GET", f"/locks/{lock_id}")
    assert shown["audit_generation"] == 1 and shown["audit_cursor"] == 0
    await wiped.close()
