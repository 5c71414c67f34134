"""Each answer of ``coap-open`` through a relay that loses exactly the datagrams it is told to.

The real lock, the card in process, ``coap-open`` as a person runs it. The
question every case asks is the one a person at the door has: did the door
open, and does the answer say so truthfully? A lost last answer must never be
reported as "unreachable" (the person would tap again while the door stood
open); a lock that never answered must never be reported as "unknown".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from elock_testkit.cardproc import coap_open, make_card
from elock_testkit.lockproc import LockProcess
from elock_testkit.lossy_relay import (
    DOWN,
    UP,
    DropPattern,
    LossyRelay,
    drop_after,
    drop_all,
    drop_application_data,
    drop_indices,
)

# Real peers (libcoap's coap-client, a real lock process): not in the fast run.
pytestmark = pytest.mark.peer


def _tap(lock: LockProcess, directory: Path, pattern: DropPattern | None, *args: str) -> tuple:  # type: ignore[type-arg]
    with LossyRelay(("127.0.0.1", lock.port), loss=0.0, pattern=pattern) as relay:
        card = make_card(directory, [("Door", f"coaps://127.0.0.1:{relay.port}/lock", lock.mint())])
        return coap_open("--card", str(card), *args)


def _opens(lock: LockProcess) -> list[dict]:  # type: ignore[type-arg]
    return [row for row in lock.audit() if row["action"] == "open"]


@pytest.fixture
def slow_lock(tmp_path: Path) -> Iterator[LockProcess]:
    """A lock whose door stays open long enough for a second ``coap-open`` to start."""
    with LockProcess.create(tmp_path / "slow-lock", open_seconds=30) as lock:
        yield lock


def test_lost_answer_is_unknown_and_a_second_tap_counts_once(
    slow_lock: LockProcess, tmp_path: Path
) -> None:
    """Every answer to the request is lost: the door opened, the key host says it may have."""
    lock = slow_lock
    with LossyRelay(("127.0.0.1", lock.port), loss=0.0) as relay:
        relay.pattern = drop_application_data(DOWN)
        card = make_card(tmp_path, [("Door", f"coaps://127.0.0.1:{relay.port}/lock", lock.mint())])
        status, body, _ = coap_open("--card", str(card))
        assert (status, body["status"]) == (7, "unknown"), body
        assert "the door may be open; check before trying again" in str(body["message"])
        assert lock.relay_events().count("on") == 1  # it did open, once for all the resends

        relay.pattern = None  # the link heals; the person taps again within the open time
        status, body, _ = coap_open("--card", str(card))
    assert (status, body["status"]) == (0, "opened"), body
    opens = _opens(lock)
    assert [(r["outcome"], r["reason"]) for r in opens] == [("granted", "opened")], opens


def test_lost_answer_at_the_hosts_deadline_is_unknown(lock: LockProcess, tmp_path: Path) -> None:
    """The host's own deadline comes first: what the card last said decides, not the clock."""
    status, body, _ = _tap(lock, tmp_path, drop_application_data(DOWN), "--timeout", "1")
    assert (status, body["status"]) == (7, "unknown"), body
    assert lock.relay_events().count("on") == 1


@pytest.mark.parametrize(
    "pattern",
    [drop_all(UP), drop_all(DOWN), drop_after(DOWN, 1)],
    ids=["nothing-reaches-the-lock", "no-answer-comes-back", "only-the-cookie-comes-back"],
)
def test_handshake_never_finished_is_unreachable(
    lock: LockProcess, tmp_path: Path, pattern: DropPattern
) -> None:
    status, body, _ = _tap(lock, tmp_path, pattern, "--timeout", "2")
    assert (status, body["status"]) == (4, "unreachable"), body
    assert "on" not in lock.relay_events()
    assert _opens(lock) == []


def test_lost_request_is_sent_again_and_opens(lock: LockProcess, tmp_path: Path) -> None:
    """Only the first request is lost: CoAP resends it within the session; one open."""
    first_request = {"seen": False}

    def lose_first_request(way: str, index: int, datagram: bytes) -> bool:
        if way == UP and drop_application_data(UP)(way, index, datagram):
            lost, first_request["seen"] = not first_request["seen"], True
            return lost
        return False

    status, body, _ = _tap(lock, tmp_path, lose_first_request)
    assert (status, body["status"]) == (0, "opened"), body
    assert lock.relay_events().count("on") == 1 and len(_opens(lock)) == 1


@pytest.mark.parametrize(
    ("up", "down"),
    [({0}, set()), (set(), {0}), ({1}, set()), (set(), {1, 2}), ({2}, set()), (set(), {3})],
    ids=["hello", "cookie", "hello-2", "server-hello", "client-finished", "server-finished"],
)
def test_each_lost_handshake_flight_is_recovered(
    lock: LockProcess, tmp_path: Path, up: set[int], down: set[int]
) -> None:
    status, body, _ = _tap(lock, tmp_path, drop_indices(up, down))
    assert (status, body["status"]) == (0, "opened"), body
    assert lock.relay_events().count("on") == 1
