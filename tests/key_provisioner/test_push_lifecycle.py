"""The push lifecycle table: what each event does in each state, and everything else refused."""

from __future__ import annotations

import itertools

import pytest

from key_provisioner.schemas.keys import PushState
from key_provisioner.services.push_lifecycle import (
    TRANSITIONS,
    PushEvent,
    PushTransitionError,
    next_state,
)
from key_provisioner.services.sync_gate import MAX_ADDRESSES, SyncGate, client_of


def test_the_story_of_a_key_both_deliveries_share() -> None:
    state = PushState.PENDING
    for event, expected in [
        (PushEvent.TRY_AGAIN, PushState.PENDING),  # a cut link, a host that went away
        (PushEvent.LANDED, PushState.INSTALLED),
        (PushEvent.LANDED, PushState.INSTALLED),  # a second visit finds it: idempotent
        (PushEvent.REVOKED, PushState.REMOVING),  # until the card is reached again
        (PushEvent.TRY_AGAIN, PushState.REMOVING),
        (PushEvent.GONE, PushState.REMOVED),
    ]:
        state = next_state(state, event)
        assert state is expected


@pytest.mark.parametrize(("state", "event"), list(itertools.product(PushState, PushEvent)))
def test_every_pair_is_in_the_table_or_refused(state: PushState, event: PushEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(PushTransitionError, match=event.value):
            next_state(state, event)


def test_a_removed_key_never_comes_back_and_a_failed_one_only_by_an_admin() -> None:
    comes_back = {new for (old, _), new in TRANSITIONS.items() if old is PushState.REMOVED}
    assert comes_back == {PushState.REMOVED}
    out_of_failed = {e for (old, e), _ in TRANSITIONS.items() if old is PushState.FAILED}
    assert out_of_failed == {PushEvent.DROPPED, PushEvent.RETRY_INSTALL, PushEvent.RETRY_DELETE}


def test_sync_gate_rate_per_address_and_cap_at_once() -> None:
    gate = SyncGate(per_minute=2, concurrent=3)
    assert gate.admit("a", 0.0) == 0 and gate.admit("a", 0.0) == 0
    assert gate.admit("a", 1.0) == 29  # one more token in 29 s (2 a minute)
    assert gate.admit("b", 1.0) == 0  # another address has its own bucket
    assert gate.admit("c", 1.0) == 1  # three running: capacity, try again in 1 s
    gate.done("b")
    assert gate.admit("c", 1.0) == 0
    gate.done("c")
    assert gate.admit("a", 31.0) == 0  # the bucket refilled


def test_sync_gate_one_address_holds_only_its_share_of_the_slots() -> None:
    gate = SyncGate(per_minute=4, concurrent=8, per_address=2)
    assert [gate.admit("192.0.2.1", 0.0) for _ in range(3)] == [0, 0, 1]
    assert gate.admit("192.0.2.2", 0.0) == 0  # another address still gets in
    gate.done("192.0.2.1")
    assert gate.admit("192.0.2.1", 0.0) == 0  # its own slot came back
    assert gate.running == 3
    assert gate.admit("192.0.2.1", 0.0) == 15  # a try beyond its share took a token too


def test_sync_gate_counts_an_ipv6_client_by_its_64() -> None:
    gate = SyncGate(per_minute=2, concurrent=100, per_address=100)
    # One subscriber's /64: a fresh address per sync is still the same client.
    got = [gate.admit(f"2001:db8:0:1::{n:x}", 0.0) for n in range(1, 5)]
    assert got == [0, 0, 30, 30], got
    assert gate.admit("2001:db8:0:2::1", 0.0) == 0  # the next /64 is another client
    assert client_of("::ffff:192.0.2.7") == client_of("192.0.2.7") == "192.0.2.7"
    assert client_of("fe80::1%eth0") == "fe80::/64"


def test_sync_gate_forgets_the_oldest_addresses() -> None:
    gate = SyncGate(per_minute=1, concurrent=1)
    for n in range(MAX_ADDRESSES + 50):
        gate.admit(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(gate._buckets) == MAX_ADDRESSES
