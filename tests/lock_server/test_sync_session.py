"""The lock's and the key server's sync sessions as an in-memory pair (no I/O)."""

from __future__ import annotations

import uuid

import pytest

from elock_common import LockSecret
from elock_common.lock_sync import (
    AuditRow,
    Challenge,
    Proof,
    Refused,
    decode,
    encode,
    lock_proof,
)
from key_provisioner.sync import session as srv
from lock_server import sync_session as lck

LOCK_ID = str(uuid.uuid4())


def _pair(secret: LockSecret, server_secret: LockSecret | None = None) -> tuple[
    lck.LockSyncSession, srv.ServerSyncSession
]:  # fmt: skip
    lock = lck.LockSyncSession(
        LOCK_ID, secret.derive_sync_key(), revocation_version=2, audit_log=77, ping_seconds=20
    )
    server = srv.ServerSyncSession()
    lock.start(100.0)
    (hello,) = lock.data_to_send()
    (event,) = server.receive(hello, 100.2)
    assert isinstance(event, srv.HelloReceived) and event.hello.revocation_version == 2
    server.challenge((server_secret or secret).derive_sync_key())
    return lock, server


def _flow(sender: object, receiver: object, now: float) -> list[object]:
    events: list[object] = []
    for frame in sender.data_to_send():  # type: ignore[attr-defined]
        events += receiver.receive(frame, now)  # type: ignore[attr-defined]
    return events


def test_handshake_welcome_list_audit_and_ping() -> None:
    secret = LockSecret.generate()
    lock, server = _pair(secret)
    assert _flow(server, lock, 100.4) == []
    (auth,) = _flow(lock, server, 100.5)
    assert isinstance(auth, srv.Authenticated) and auth.hello.audit_log == 77
    server.welcome(1000.0, 3, 5)
    server.send_revocations(5, ("0123456789ab",))
    synced, clock, revs = _flow(server, lock, 100.6)
    assert synced == lck.Synced(3, 5)
    assert isinstance(clock, lck.ClockMeasured) and clock.offset == pytest.approx(899.7)
    assert revs == lck.RevocationsReceived(5, ("0123456789ab",))
    lock.confirm(5)
    assert lock.audit_after() == 3
    lock.upload([AuditRow(4, 1.0, None, "p", "open", "refused", "key revoked")])
    assert lock.audit_after() is None  # one batch in flight
    held, audit = _flow(lock, server, 100.7)
    assert held == srv.HeldReported(5) and isinstance(audit, srv.AuditReceived)
    server.ack_audit(4)
    assert _flow(server, lock, 100.8) == [lck.AuditAcked(4)]
    assert lock.audit_after() == 4
    # ping when due, pong measures the clock again
    assert lock.get_timer() == pytest.approx(120.6)
    lock.handle_timer(120.6)
    (ping,) = _flow(lock, server, 120.7)
    assert isinstance(ping, srv.PingReceived) and ping.clock_offset == pytest.approx(899.7)
    (clock,) = _flow(server, lock, 120.8)
    assert isinstance(clock, lck.ClockMeasured) and clock.round_trip == pytest.approx(0.2)


def test_missing_pong_closes_the_session() -> None:
    secret = LockSecret.generate()
    lock, server = _pair(secret)
    _flow(server, lock, 100.4)
    _flow(lock, server, 100.5)
    server.welcome(100.5, 0, 2)
    _flow(server, lock, 100.6)
    lock.handle_timer(120.6)
    lock.data_to_send()  # the ping is lost
    events = lock.handle_timer(130.6)
    assert isinstance(events[0], lck.Closed) and "no pong" in events[0].reason


def test_a_server_without_the_lock_secret_is_not_believed() -> None:
    lock, server = _pair(LockSecret.generate(), LockSecret.generate())
    (closed,) = _flow(server, lock, 100.4)
    assert isinstance(closed, lck.Closed) and "does not verify" in closed.reason
    assert lock.data_to_send() == []  # no proof is given to an impostor


def test_a_lock_without_the_secret_is_refused() -> None:
    _lock, server = _pair(LockSecret.generate())
    challenge = decode(server.data_to_send()[0])
    assert isinstance(challenge, Challenge)
    guessed = lock_proof(b"k" * 32, LOCK_ID, b"n" * 16, challenge.nonce, hello=b"h" * 32)
    (closed,) = server.receive(encode(Proof(guessed)), 100.5)
    assert isinstance(closed, srv.Closed) and "does not verify" in closed.reason
    assert "refused" in server.data_to_send()[0]
    assert server.state is srv.State.CLOSED


def test_a_replayed_proof_is_refused() -> None:
    secret = LockSecret.generate()
    lock, server = _pair(secret)
    _flow(server, lock, 100.4)
    (proof,) = lock.data_to_send()
    server.receive(proof, 100.5)
    # the recorded hello and proof, played to a new connection: its nonce is new
    _, server2 = _pair(secret)
    (closed,) = server2.receive(proof, 101.0)
    assert isinstance(closed, srv.Closed) and "does not verify" in closed.reason


def test_unexpected_messages_end_the_session_with_a_reason() -> None:
    server = srv.ServerSyncSession()
    (closed,) = server.receive(encode(Refused("bye")), 1.0)
    assert isinstance(closed, srv.Closed)
    server = srv.ServerSyncSession()
    (closed,) = server.receive("{}", 1.0)
    assert isinstance(closed, srv.Closed) and "unknown message type" in closed.reason
    assert server.receive("{}", 1.0) == []  # closed stays closed
    lock = lck.LockSyncSession(LOCK_ID, b"k" * 32, revocation_version=0, audit_log=1)
    lock.start(1.0)
    (closed,) = lock.receive(encode(Refused("lock retired")), 1.1)
    assert closed == lck.Closed("key server refused: lock retired")


def test_a_held_back_welcome_cannot_move_the_clock_judgement() -> None:
    """A man in the middle holds the welcome for an hour: on main the lock took the
    key server's clock as half an hour behind; now the handshake deadline ends it."""
    secret = LockSecret.generate()
    lock, server = _pair(secret)  # hello at 100.0, pong_timeout 10 s
    _flow(server, lock, 100.4)
    _flow(lock, server, 100.5)
    server.welcome(100.5, 0, 2)
    assert lock.get_timer() == pytest.approx(110.0)
    events = _flow(server, lock, 3700.0)
    assert len(events) == 1 and isinstance(events[0], lck.Closed), events
    assert "no welcome within 10 s" in events[0].reason
    assert lock.clock_offset is None


def test_a_silent_key_server_ends_the_handshake_on_the_timer() -> None:
    lock, _server = _pair(LockSecret.generate())
    assert lock.get_timer() == pytest.approx(110.0)
    assert lock.handle_timer(109.9) == []
    (closed,) = lock.handle_timer(110.0)
    assert isinstance(closed, lck.Closed) and "no challenge within 10 s" in closed.reason


def test_a_changed_hello_fails_the_handshake_on_both_sides() -> None:
    """A man in the middle rewrites the hello (here: the version the lock holds, so the
    server would send no list and record the lock as holding its own). The server's
    proof is then over another hello: the lock refuses it and proves nothing."""
    secret = LockSecret.generate()
    lock = lck.LockSyncSession(
        LOCK_ID, secret.derive_sync_key(), revocation_version=2, audit_log=77, ping_seconds=20
    )
    server = srv.ServerSyncSession()
    lock.start(100.0)
    (hello,) = lock.data_to_send()
    changed = hello.replace('"revocation_version":2', '"revocation_version":9')
    assert changed != hello
    (event,) = server.receive(changed, 100.2)
    assert isinstance(event, srv.HelloReceived) and event.hello.revocation_version == 9
    server.challenge(secret.derive_sync_key())
    (closed,) = _flow(server, lock, 100.4)
    assert isinstance(closed, lck.Closed) and "hello was changed" in closed.reason
    assert lock.data_to_send() == []


def test_a_wall_clock_stepped_back_neither_stalls_the_pings_nor_hides_in_the_offset() -> None:
    """Timers run on the steady clock: on main they ran on the wall clock, and a step
    back of 90 s held the next ping for 90 s (the server's idle timeout closed
    the link first). The pong then measures the step against the wall clock."""
    secret = LockSecret.generate()
    lock, server = _pair(secret)  # steady and wall agree until the step: both 100.x
    _flow(server, lock, 100.4)
    _flow(lock, server, 100.5)
    server.welcome(100.5, 0, 2)
    _flow(server, lock, 100.6)
    assert lock.clock_offset == pytest.approx(0.2)
    step = -90.0  # settimeofday 90 s back (the key server closes an idle link at 60 s)
    assert lock.get_timer() == pytest.approx(120.6)
    lock.handle_timer(120.6, wall=120.6 + step)
    (ping,) = _flow(lock, server, 120.7)
    assert isinstance(ping, srv.PingReceived)
    events = []
    for frame in server.data_to_send():
        events += lock.receive(frame, 120.8, wall=120.8 + step)
    (clock,) = events
    assert isinstance(clock, lck.ClockMeasured) and clock.round_trip == pytest.approx(0.2)
    assert clock.offset == pytest.approx(90.0, abs=0.5)
