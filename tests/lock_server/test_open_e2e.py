"""The real lock process, opened and refused by libcoap's own clients."""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import pytest

from elock_testkit.lockproc import Key, LockProcess, coap
from elock_testkit.waiting import wait_for
from tests.conftest import require_tool

# Real peers (libcoap, pcscd, Chromium, systemd-analyze...): not in the fast run.
pytestmark = pytest.mark.peer


@pytest.mark.parametrize("tool", ["coap-client-openssl", "coap-client-gnutls"])
def test_minted_key_opens_then_relocks(lock: LockProcess, tool: str) -> None:
    require_tool(tool)
    key = lock.mint()
    out = coap(tool, "post", key, lock.uri)
    assert "opened" in out
    assert lock.relay_on()
    wait_for(lambda: not lock.relay_on(), 3, what="the relay relocking")
    # the relay's state file and its event log are two writes: wait for the log's line too
    wait_for(lambda: lock.relay_events()[-2:] == ["on", "off"], 3, what="the relay's log")
    rows = [r for r in lock.audit() if r["key_id"] == key.key_id]
    assert rows[-1]["outcome"] == "granted" and rows[-1]["action"] == "open"
    assert rows[-1]["peer"].startswith("127.0.0.1:") and rows[-1]["ts"] > time.time() - 30


def test_state_is_readable(lock: LockProcess) -> None:
    out = coap("coap-client-openssl", "get", lock.mint(), lock.uri)
    assert json.loads(out.strip().splitlines()[-1]) == {"state": "locked", "open_seconds": 0.5}


def _assert_refused(lock: LockProcess, key: Key, out: str, reason: str) -> None:
    # A handshake refusal is queued to the audit writer, not awaited: wait for its row.
    wait_for(lambda: any(r["key_id"] == key.key_id for r in lock.audit()), what="the audit row")
    rows = [r for r in lock.audit() if r["key_id"] == key.key_id and r["outcome"] == "refused"]
    assert rows, f"no refusal audited; client printed {out!r}"
    assert reason in rows[-1]["reason"]
    assert "on" not in lock.relay_events()
    assert not lock.relay_on()


def _push(lock: LockProcess, admin: Key, version: int, revoked: list[str]) -> str:
    body = json.dumps({"version": version, "revoked": revoked})
    return coap(
        "coap-client-openssl",
        "post",
        admin,
        lock.uri.replace("/lock", "/admin/revocations"),
        payload=body,
    )


def test_wrong_psk_is_refused(lock: LockProcess) -> None:
    key = lock.mint()
    wrong = Key(key.identity, "A" * 16, key.key_id)
    out = coap("coap-client-openssl", "post", wrong, lock.uri, timeout=2)
    assert "opened" not in out
    wait_for(lambda: any(r["key_id"] == key.key_id for r in lock.audit()))
    _assert_refused(lock, key, out, "wrong PSK")


@pytest.mark.parametrize(
    ("mint_args", "reason", "code"),
    [
        # `elock-lock mint` refuses a key that is dead on arrival: made in-process here.
        (["expired 2020-01-01 .. 2021-01-01"], "key expired", "4.01"),
        (["--not-before", "2099-01-01T00:00:00"], "key not yet valid", "4.01"),
        (["--admin", "--no-open"], "lacks the open right", "4.03"),
    ],
)
def test_invalid_keys_are_refused_with_reason(
    lock: LockProcess, mint_args: list[str], reason: str, code: str
) -> None:
    if mint_args[0].startswith("expired"):
        key = lock.mint_unchecked(not_before=1_577_836_800, not_after=1_609_459_200)
    else:
        key = lock.mint(*mint_args)
    out = coap("coap-client-openssl", "post", key, lock.uri)
    assert code in out and reason in out, out
    _assert_refused(lock, key, out, reason)


def test_one_time_key_opens_once(lock: LockProcess) -> None:
    key = lock.mint("--one-time")
    assert "opened" in coap("coap-client-openssl", "post", key, lock.uri)
    wait_for(lambda: not lock.relay_on(), 3)
    out = coap("coap-client-openssl", "post", key, lock.uri)
    assert "4.03" in out and "one-time key already used" in out
    assert lock.relay_events().count("on") == 1


def test_key_for_another_lock_is_refused(lock: LockProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = LockProcess.create(tmp_path / "other")
    key = other.mint()
    out = coap("coap-client-openssl", "post", key, lock.uri, timeout=2)
    assert "opened" not in out
    _assert_refused(lock, key, out, "key minted for another lock")


def test_revocation_refuses_and_survives_restart(lock: LockProcess) -> None:
    admin, key = lock.mint("--admin", "--no-open"), lock.mint()
    out = _push(lock, admin, 1, [key.key_id])
    assert json.loads(out.strip().splitlines()[-1]) == {"version": 1}
    # an older or equal version is acknowledged with the version held, and changes nothing
    assert json.loads(_push(lock, admin, 1, []).strip().splitlines()[-1]) == {"version": 1}
    lock.stop()
    lock.start()
    out = coap("coap-client-openssl", "post", key, lock.uri)
    assert "4.01" in out and "key revoked" in out
    _assert_refused(lock, key, out, "key revoked")
    assert lock.status()["revocation_version"] == 1


def test_revocation_push_needs_admin_and_valid_body(lock: LockProcess) -> None:
    user, admin = lock.mint(), lock.mint("--admin", "--no-open")
    out = _push(lock, user, 5, [user.key_id])
    assert "4.03" in out
    for bad in [
        '{"version": 0, "revoked": []}',
        '{"version": 2}',
        "[]",
        "not json",
        '{"version": 2, "revoked": ["XYZ"]}',
    ]:
        out = coap(
            "coap-client-openssl",
            "post",
            admin,
            lock.uri.replace("/lock", "/admin/revocations"),
            payload=bad,
        )
        assert "4.00" in out, (bad, out)
    assert lock.status()["revocation_version"] == 0


def test_audit_is_readable_blockwise_by_admin(lock: LockProcess) -> None:
    key, admin = lock.mint("--not-before", "2099-01-01T00:00:00"), lock.mint("--admin")
    for _ in range(12):
        coap("coap-client-openssl", "post", key, lock.uri)
    out = coap(
        "coap-client-openssl", "get", admin, lock.uri.replace("/lock", "/admin/audit?limit=500")
    )
    rows = json.loads(out.strip().splitlines()[-1])
    assert len(rows) >= 12 and len(out) > 1024  # more than one block
    assert {r["reason"] for r in rows if r["key_id"] == key.key_id} == {"key not yet valid"}


def test_kill_during_open_leaves_relay_off_after_restart(lock: LockProcess) -> None:
    lock.stop()
    text = lock.config.read_text().replace("open_seconds = 0.5", "open_seconds = 30")
    lock.config.write_text(text)
    lock.start()
    assert "opened" in coap("coap-client-openssl", "post", lock.mint(), lock.uri)
    assert lock.relay_on()
    lock.stop(signal.SIGKILL)
    assert lock.relay_on()  # a crash leaves the pin as it was; the strike must be fail-secure
    lock.start()
    assert not lock.relay_on()
    assert lock.relay_events()[-1] == "off"


def test_sigterm_during_open_releases_relay(lock: LockProcess) -> None:
    lock.stop()
    lock.config.write_text(
        lock.config.read_text().replace("open_seconds = 0.5", "open_seconds = 30")
    )
    lock.start()
    assert "opened" in coap("coap-client-openssl", "post", lock.mint(), lock.uri)
    lock.stop(signal.SIGTERM)
    assert not lock.relay_on()


def test_unset_clock_refuses_time_bounded_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lock = LockProcess.create(tmp_path / "lock")
    bounded = lock.mint("--not-before", "1970-01-01T00:00:00", "--not-after", "2099-01-01T00:00:00")
    unbounded = lock.mint()
    lock.wrapper = [require_tool("faketime"), "-f", "@1970-01-02 00:00:00"]
    lock.start()
    try:
        out = coap("coap-client-openssl", "post", bounded, lock.uri)
        assert "4.03" in out and "clock not set" in out, out
        assert "opened" in coap("coap-client-openssl", "post", unbounded, lock.uri)
    finally:
        lock.stop()


def test_lock_state_is_observable(lock: LockProcess) -> None:
    """An observer (coap-client -s) hears the door open and relock."""
    import subprocess

    watcher_key, opener = lock.mint(), lock.mint()
    exe = require_tool("coap-client-openssl")
    watcher = subprocess.Popen(
        [exe, "-m", "get", "-s", "4", "-u", watcher_key.identity, "-k", watcher_key.psk, lock.uri],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    # Open only once the lock has registered the observer: the first notification
    # ("locked") is the lock's answer to the registration itself.
    heard: list[str] = []
    stdout = watcher.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: heard.extend(iter(lambda: stdout.read(1), "")))
    reader.start()
    try:
        wait_for(lambda: '"state":"locked"' in "".join(heard), 10, what="the first notification")
        assert "opened" in coap("coap-client-openssl", "post", opener, lock.uri)
        watcher.wait(timeout=15)
    finally:
        watcher.kill()
        reader.join(5)
        stdout.close()
    out = "".join(heard)
    # coap-client prints each notification's payload with no separator
    states = re.findall(r'"state":"(\w+)"', out)
    assert states[:3] == ["locked", "open", "locked"], out
