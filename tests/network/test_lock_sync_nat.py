"""Issue #12's story on a real NAT: the lock at home dials the key server in the cloud.

The lock and the phone (libcoap's ``coap-client-openssl``) are in "home", behind
an nftables masquerade; the key server is in "cloud". The cloud cannot open a
connection to the lock; everything the lock learns comes over the connection
it dialled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from elock_testkit.liveserver import (
    Process,
    free_tcp_port,
    run_module,
    start_keyserver,
)
from elock_testkit.waiting import wait_for
from tests.conftest import require_tool
from tests.key_provisioner.test_e2e_real_lock import install_lock, open_door
from tests.netns import CLOUD_IP, HOME_IP, NatNetwork, inside, nat_network

pytestmark = [pytest.mark.peer, pytest.mark.slow]

NAT_TIMEOUT = 3  # seconds the router keeps an idle UDP or TCP mapping
IDLE = 4  # the key server's sync.idle_timeout_seconds


@pytest.fixture
def net() -> Iterator[NatNetwork]:
    with nat_network(udp_timeout=NAT_TIMEOUT, tcp_timeout=NAT_TIMEOUT) as network:
        yield network


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


class Story:
    """The key server in the cloud, one enrolled lock at home, and an admin in the cloud."""

    def __init__(self, net: NatNetwork, tmp_path: Path) -> None:
        require_tool("coap-client-openssl")
        self.net, self.tmp = net, tmp_path
        database = f"sqlite:///{tmp_path / 'keyserver.sqlite3'}"
        self.server = start_keyserver(
            tmp_path / "keyserver", database, worker=False, host=CLOUD_IP,
            sync=f"idle_timeout_seconds = {IDLE}\n", wrapper=net.cloud.exec_args([]),
        )  # fmt: skip
        headers = {"Authorization": f"Bearer {self.server.token}"}
        self.api = httpx.Client(base_url=self.server.url, headers=headers, timeout=10)
        self.port = free_tcp_port()
        self.uri = f"coaps://{HOME_IP}:{self.port}/lock"
        self.lock: Process | None = None

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        with inside(self.net.cloud):  # the admin sits in the cloud, next to the key server
            return _ok(self.api.request(method, path, **kwargs), status)

    def enrol(self, wrapper: list[str] | None = None) -> str:
        body = {"name": "home-door", "host": HOME_IP, "port": self.port}
        enrolled = self.call("POST", "/locks", 201, json=body)
        config = install_lock(enrolled["bundle"], self.tmp / "lock")
        text = config.read_text().replace("ping_seconds = 2.0", "ping_seconds = 1.0")
        config.write_text(text + "reconnect_max_seconds = 1.0\n")
        self.lock = Process(
            ["lock_server.cli", "serve", "--config", str(config)],
            self.tmp / "lock.log",
            "listening on",
            wrapper=[*self.net.home.exec_args([]), *(wrapper or [])],
        )
        self.lock.start()
        lock_id: str = enrolled["lock"]["id"]
        return lock_id

    def issue(self, lock_id: str) -> dict[str, Any]:
        se = self.call("GET", "/secure-elements")["items"]
        if not se:
            body = {"seid": "home-se", "racs_server": f"{CLOUD_IP}:7443"}
            se = [self.call("POST", "/secure-elements", 201, json=body)]
        key: dict[str, Any] = self.call(
            "POST", "/keys", 201, json={"lock_id": lock_id, "secure_element_id": se[0]["id"]}
        )
        return key

    def open(self, key: dict[str, Any], where: str = "home") -> str:
        return open_door(key, self.uri, getattr(self.net, where).exec_args([]))

    def lock_status(self) -> dict[str, Any]:
        """``elock-lock status`` (it reads the lock's files; no network needed)."""
        out = run_module(
            "lock_server.cli", "status", "--config", str(self.tmp / "lock" / "lock.toml"), "--json"
        )
        sync: dict[str, Any] = json.loads(out)["sync"]
        return sync

    def close(self) -> None:
        if self.lock is not None:
            self.lock.stop()
        self.server.process.stop()
        self.api.close()


@pytest.fixture
def story(net: NatNetwork, tmp_path: Path) -> Iterator[Story]:
    story = Story(net, tmp_path)
    try:
        yield story
    finally:
        story.close()


def test_revocations_and_audit_reach_a_lock_behind_nat(story: Story) -> None:
    lock_id = story.enrol()
    wait_for(lambda: story.call("GET", f"/locks/{lock_id}")["connected"], 10, "lock connected")

    # The cloud cannot reach the lock: not the key server, not anyone there.
    first, second, third = (story.issue(lock_id) for _ in range(3))
    from_cloud = story.open(first, "cloud")
    assert "opened" not in from_cloud and "2.04" not in from_cloud, from_cloud

    # Issue, open from home, revoke from the cloud: the lock refuses within 1 s.
    assert "opened" in story.open(first)
    story.call("POST", f"/keys/{first['id']}/revoke", json={"reason": "lost"})
    answered = time.monotonic()
    wait_for(lambda: story.call("GET", f"/locks/{lock_id}")["revocation"]["in_sync"], 1.0, "ack")
    out = story.open(first)
    assert "key revoked" in out and "opened" not in out, out
    assert time.monotonic() - answered < 1.5

    # Revoked while the lock was stopped: the very first try after "listening on" is refused.
    assert story.lock is not None
    story.lock.stop()
    story.call("POST", f"/keys/{second['id']}/revoke")
    story.lock.start()
    out = story.open(second)
    assert "key revoked" in out and "opened" not in out, out

    # The link goes down for longer than the NAT keeps a mapping, the NAT forgets
    # everything, the link comes back: the lock dials again by itself.
    story.net.cut_link()
    cut = time.monotonic()
    wait_for(lambda: not story.lock_status()["connected"], 10, "the lock notices the link is dead")
    wait_for(lambda: time.monotonic() - cut > NAT_TIMEOUT + 1, NAT_TIMEOUT + 2, "NAT timeout")
    story.net.flush_nat_state()
    story.net.restore_link()
    wait_for(lambda: story.lock_status()["connected"], IDLE + 15, "sync resumed")
    assert story.call("GET", f"/locks/{lock_id}")["connected"]
    story.call("POST", f"/keys/{third['id']}/revoke")
    wait_for(lambda: story.call("GET", f"/locks/{lock_id}")["revocation"]["in_sync"], 1.0, "ack")
    out = story.open(third)
    assert "key revoked" in out and "opened" not in out, out

    # The open and the refusals are in the key server's audit log, each once.
    def rows() -> list[tuple[str, str, str]] | None:
        items = story.call("GET", f"/locks/{lock_id}/audit", params={"limit": 200})["items"]
        found = [(r["key_id"], r["outcome"], r["reason"]) for r in items if r["action"] == "open"]
        return found if len(found) >= 4 else None

    found = wait_for(rows, 10, "audit rows")
    assert sorted(found) == sorted(
        [
            (first["key_id"], "granted", "opened"),
            (first["key_id"], "refused", "key revoked"),
            (second["key_id"], "refused", "key revoked"),
            (third["key_id"], "refused", "key revoked"),
        ]
    )
