"""A lock whose wall clock is set back after it measured the key server's clock.

An attacker on the lock's LAN who can step its clock (unauthenticated NTP) and cut
its link to the key server (DNS, a dropped route) turns an expired key back into a
valid one unless the lock notices the step. The lock knows the key server's time as
of its last pong and how much time has passed since on a clock no one can set
(``time.monotonic``), so a step back is a clock "behind the key server's" at once,
connected or not; across a restart, the latest key-server time it stored is a floor.

The lock runs under libfaketime with a timestamp file the test rewrites while the
lock runs (``FAKETIME_NO_CACHE``: read at every clock call); its monotonic clock is
left alone, as an NTP step leaves ``CLOCK_MONOTONIC`` alone.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from elock_common.keys import mint_key
from elock_testkit.liveserver import Process, start_keyserver
from elock_testkit.ports import free_udp_port
from elock_testkit.waiting import wait_for
from lock_server.config import load_config
from tests.conftest import require_tool
from tests.key_provisioner.test_e2e_real_lock import _ok, install_lock, open_door

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def _libfaketime() -> str:
    require_tool("faketime")  # Debian's faketime package ships the library beside it
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime.so.1 not found beside faketime (scripts/install.sh installs it)")
    return found[0]


@dataclass
class SteppableLock:
    """A real lock, enrolled and connected, whose wall clock the test can step."""

    process: Process
    lock_id: str
    uri: str
    expired_key: dict[str, str]  # expired an hour ago, valid for the week before
    offset_file: Path

    def step_clock(self, offset: str) -> None:
        self.offset_file.write_text(f"{offset}\n")


@pytest.fixture
def keyserver(tmp_path: Path, database_url: str) -> Iterator[tuple[httpx.Client, Process]]:
    server = start_keyserver(tmp_path / "keyserver", database_url, worker=False)
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            yield client, server.process
    finally:
        server.process.stop()


@pytest.fixture
def lock(keyserver: tuple[httpx.Client, Process], tmp_path: Path) -> Iterator[SteppableLock]:
    require_tool("coap-client-openssl")
    api, _ = keyserver
    port = free_udp_port()
    body = {"name": "rollback", "host": "127.0.0.1", "port": port}
    enrolled = _ok(api.post("/locks", json=body), 201)
    config = install_lock(enrolled["bundle"], tmp_path / "lock")
    text = config.read_text().replace("start_wait_seconds = 5.0", "start_wait_seconds = 1.0")
    config.write_text(text)
    offset_file = tmp_path / "faketime"
    offset_file.write_text("+0\n")
    wrapper = [
        "env",
        f"LD_PRELOAD={_libfaketime()}",
        f"FAKETIME_TIMESTAMP_FILE={offset_file}",
        "FAKETIME_NO_CACHE=1",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
        "DONT_FAKE_MONOTONIC=1",  # the spelling of libfaketime before 0.9.10
    ]
    argv = ["lock_server.cli", "serve", "--config", str(config)]
    process = Process(argv, tmp_path / "lock.log", "listening on", wrapper=wrapper)
    now = int(time.time())
    secret = load_config(config).load_secret()
    _, expired = mint_key(secret, not_before=now - 7 * 86400, not_after=now - 3600)
    key = {"identity": expired.identity.decode(), "psk": expired.psk.decode()}
    lock = SteppableLock(
        process, enrolled["lock"]["id"], f"coaps://127.0.0.1:{port}/lock", key, offset_file
    )
    process.start()
    try:
        wait_for(
            lambda: _ok(api.get(f"/locks/{lock.lock_id}"))["connected"],
            10,
            "the lock connected to the key server",
        )
        yield lock
    finally:
        process.stop()


def test_a_clock_set_back_after_the_last_pong_does_not_revive_an_expired_key(
    keyserver: tuple[httpx.Client, Process], lock: SteppableLock, tmp_path: Path
) -> None:
    out = open_door(lock.expired_key, lock.uri)
    assert "4.01" in out and "key expired" in out, out

    # The key server goes out of reach (the lock keeps what it measured last), then
    # the lock's clock is stepped back a day: into the key's window again.
    keyserver[1].stop()
    lock.step_clock("-1d")
    out = open_door(lock.expired_key, lock.uri)
    assert "opened" not in out, out
    assert "4.03" in out and "1.0 days behind the key server's" in out, out
    relay_log = (tmp_path / "lock" / "var" / "relay.log").read_text()
    assert " on" not in relay_log, relay_log


def test_a_clock_set_back_before_a_restart_with_the_key_server_out_of_reach(
    keyserver: tuple[httpx.Client, Process], lock: SteppableLock
) -> None:
    """The same step, then a restart (power cut, watchdog) while the key server stays out
    of reach: the lock has measured nothing since it started, but it has seen the key
    server's time before, and its clock is now far behind that."""
    keyserver[1].stop()
    lock.process.stop()
    lock.step_clock("-1d")
    lock.process.start()
    out = open_door(lock.expired_key, lock.uri)
    assert "opened" not in out, out
    assert "4.03" in out and "behind the key server's" in out, out


def test_a_clock_set_back_while_connected_shows_at_the_next_pings(
    keyserver: tuple[httpx.Client, Process], lock: SteppableLock
) -> None:
    """The sync channel keeps time by the steady clock: on main its ping timer ran on
    the wall clock, so a step back of a day held the next ping for a day; the key server
    dropped the link as idle after 60 s and the console learnt of the step only then."""
    api, _ = keyserver
    lock.step_clock("-1d")

    def offset_seen() -> bool:
        shown = _ok(api.get(f"/locks/{lock.lock_id}"))
        assert shown["connected"], shown  # the link stays up: pings keep flowing
        offset = shown["clock_offset_seconds"]  # the lock's clock minus the server's
        return offset is not None and offset < -86000

    wait_for(offset_seen, 15, "the key server shows the lock a day behind")
    assert "sync session closed" not in lock.process.log.read_text()
