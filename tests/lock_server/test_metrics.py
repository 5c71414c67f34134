"""The lock's opt-in /metrics: off by default, loopback when on, moved by real opens.

A real lock process, libcoap's client for the opens, and Prometheus's own
text parser for what the listener serves.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from elock_common import Rights
from elock_common.identity import KeyIdentity
from elock_testkit.lockproc import ELOCK_LOCK, Key, LockProcess, _env, coap
from elock_testkit.metrics import scrape
from elock_testkit.ports import free_tcp_port
from lock_server.config import DEFAULT_METRICS_PORT, parse_config
from lock_server.errors import LockConfigError
from lock_server.metrics import reason_label
from lock_server.policy import check_key, uses_exhausted


def status(lock: LockProcess) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = subprocess.run(
        [*ELOCK_LOCK, "status", "--config", str(lock.config), "--json"],
        capture_output=True, text=True, env=_env(), timeout=30,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


# -- units: config and labels -------------------------------------------------------------


def test_metrics_are_off_by_default_and_loopback_when_on(tmp_path: Path) -> None:
    config = parse_config({"lock": {"name": "d"}}, base=tmp_path)
    assert not config.metrics.enabled
    on = parse_config({"lock": {"name": "d"}, "metrics": {"enabled": True}}, base=tmp_path)
    assert (on.metrics.host, on.metrics.port) == ("127.0.0.1", DEFAULT_METRICS_PORT)


@pytest.mark.parametrize(
    "metrics",
    [{"port": 0}, {"port": 70000}, {"host": "localhost"}, {"enabled": "yes"}, {"path": "/m"}],
)
def test_bad_metrics_settings_are_refused(tmp_path: Path, metrics: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(LockConfigError, match="metrics"):
        parse_config({"lock": {"name": "d"}, "metrics": metrics}, base=tmp_path)


def test_every_policy_refusal_has_its_own_label() -> None:
    """No reason the policy gives falls into "other": labels stay meaningful and bounded."""
    import datetime as dt

    from elock_common import LockSecret, mint_key

    secret = LockSecret.generate()

    def claims(**kw: int) -> KeyIdentity:
        return mint_key(secret, rights=kw.pop("rights", Rights.OPEN), **kw)[0]

    now = 1_800_000_000.0  # a Friday
    cases: list[tuple[dict[str, int], float, bool]] = [
        ({}, now, True),
        ({"rights": Rights.ADMIN}, now, False),
        ({"not_after": 2_000_000_000}, 0, False),
        ({"not_before": 1_900_000_000}, now, False),
        ({"not_after": 1_700_000_000}, now, False),
        ({"weekdays": 0b1}, now, False),
        ({"window_start": 0, "window_end": 1}, now + 3600, False),
    ]
    reasons = [
        check_key(claims(**kw), need=Rights.OPEN, now=at, zone=dt.UTC, revoked=revoked)
        for kw, at, revoked in cases
    ]
    reasons += [uses_exhausted(claims(max_uses=1)), uses_exhausted(claims(max_uses=3))]
    labels = [reason_label(r.reason) for r in reasons if r is not None]
    assert len(labels) == len(reasons) and "other" not in labels, labels
    assert len(set(labels)) == len(labels) - 1  # one-time and N uses are both "used_up"
    for text in ("handshake failed: wrong PSK (fatal alert)",
                 "handshake refused: malformed identity (too short)",
                 "handshake refused: key minted for another lock",
                 "handshake refused: a second, different ClientKeyExchange",
                 "no eLock key on this session"):  # fmt: skip
        assert reason_label(text) != "other", text


# -- a real lock ---------------------------------------------------------------------------


@pytest.fixture
def metered(tmp_path: Path) -> LockProcess:
    lock = LockProcess.create(tmp_path / "lock", open_seconds=0.2)
    port = free_tcp_port()
    with lock.config.open("a") as f:
        f.write(f'\n[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n')
    lock.metrics_port = port  # type: ignore[attr-defined]
    lock.options = ["--log-format", "json", "-v"]
    return lock


@pytest.mark.peer
def test_opens_refusals_and_relay_move_the_metrics(metered: LockProcess) -> None:
    metered.start()
    try:
        port: int = metered.metrics_port  # type: ignore[attr-defined]
        before = scrape(port)
        assert before[("elock_lock_revocation_version", ())] == 0
        assert before[("elock_lock_relay_energized", ())] == 0
        key = metered.mint()
        assert "opened" in coap("coap-client-openssl", "post", key, metered.uri)
        no_right = metered.mint("--admin", "--no-open")
        assert "lacks the open right" in coap("coap-client-openssl", "post", no_right, metered.uri)
        wrong = Key(key.identity, "A" * 16, key.key_id)
        coap("coap-client-openssl", "post", wrong, metered.uri, timeout=2)

        deadline = time.monotonic() + 30  # the wrong PSK is judged at the handshake deadline
        while time.monotonic() < deadline:
            after = scrape(port)
            if after.get(("elock_lock_handshake_failures_total", (("cause", "wrong_psk"),))):
                break
            time.sleep(0.1)
        granted = ("elock_lock_opens_total", (("outcome", "granted"), ("reason", "opened")))
        assert after[granted] == 1
        refused = ("elock_lock_opens_total", (("outcome", "refused"), ("reason", "missing_right")))
        assert after[refused] == 1
        assert after[("elock_lock_handshake_failures_total", (("cause", "wrong_psk"),))] == 1
        assert after[("elock_lock_relay_actuations_total", ())] == 1
        assert after[("elock_lock_audit_rows_pending_upload", ())] >= 3
        assert after[("elock_lock_database_up", ())] == 1
        labels = " ".join(str(k[1]) for k in after)
        assert key.key_id not in labels and "127.0.0.1" not in labels

        code, healthy = status(metered)
        assert code == 0 and healthy["healthy"] and healthy["problems"] == []
        lines = [json.loads(line) for line in (metered.directory / "lock.log").read_text()
                 .splitlines() if line.startswith("{")]  # fmt: skip
        opened = [line for line in lines if line.get("outcome") == "granted"]
        assert opened and opened[0]["key_id"] == key.key_id and opened[0]["reason"] == "opened"
        assert all(key.psk not in json.dumps(line) for line in lines)
    finally:
        metered.stop()
    code, stopped = status(metered)
    assert code == 1 and not stopped["healthy"]
    assert any("does not answer" in p for p in stopped["problems"])


@pytest.mark.peer
def test_no_listener_unless_enabled(tmp_path: Path) -> None:
    with LockProcess.create(tmp_path / "lock") as lock:
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{DEFAULT_METRICS_PORT}/metrics", timeout=2)
        code, info = status(lock)
        assert code == 0 and info["healthy"]


@pytest.mark.peer
def test_a_taken_metrics_port_is_one_line_and_exit_2(metered: LockProcess) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", metered.metrics_port))  # type: ignore[attr-defined]
        taken.listen()
        done = subprocess.run(
            [*ELOCK_LOCK, "serve", "--config", str(metered.config)],
            capture_output=True, text=True, env=_env(), timeout=30,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot listen" in done.stderr and "Traceback" not in done.stderr
    assert not metered.relay_on()
