"""What learning and fuzzing found in the lock, replayed against a real lock process."""

from __future__ import annotations

import pytest

from elock_testkit.lockproc import LockProcess
from tests.models.lock_sul import LockSul

PADDED_IDENTITY = b"JEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE="  # 32 characters, 23 bytes


@pytest.mark.peer
def test_a_padded_identity_is_refused_and_audited(lock: LockProcess) -> None:
    """Found by atheris (target key_identity): the lock's PSK lookup let struct.error
    out through tinydtls (a SystemError in the log) instead of refusing the identity."""
    key = lock.mint()
    sul = LockSul(lock.port, (key.identity.encode(), key.psk.encode()), lock.data_dir / "relay.log")
    try:
        sul.stranger = (PADDED_IDENTITY, b"x" * 32)
        outputs = sul.query(("CH", "CH_COOKIE", "CKE_UNKNOWN", "CCS", "FIN"))
        assert "CONNECTED" not in outputs[-1]
        assert sul.query(("CH", "CH_COOKIE", "CKE", "CCS", "FIN"))[-1] == "CCS+FIN+CONNECTED"
    finally:
        sul.close()
    lock.audit_reasons_once("malformed identity")
    log = (lock.directory / "lock.log").read_text()
    assert "SystemError" not in log and "struct.error" not in log


@pytest.mark.peer
def test_a_fatal_alert_mid_handshake_ends_it(lock: LockProcess) -> None:
    """Found by learning (lock-server model): after the client's ClientKeyExchange and
    ChangeCipherSpec, a fatal alert from the client was ignored and its Finished still
    completed the handshake (RFC 5246 7.2.2: a fatal alert ends the connection at once).
    The lock's transport now ends a handshake on any alert (lock_server/dtls_transport.py)."""
    key = lock.mint()
    sul = LockSul(lock.port, (key.identity.encode(), key.psk.encode()), lock.data_dir / "relay.log")
    try:
        outputs = sul.query(("CH", "CH_COOKIE", "CKE", "CCS", "ALERT", "FIN", "APP"))
    finally:
        sul.close()
    assert "CONNECTED" not in outputs[-2] and "RELAY_ON" not in outputs[-1], outputs


@pytest.mark.peer
def test_a_second_different_key_exchange_ends_the_handshake(lock: LockProcess) -> None:
    """Found by learning (lock-server model): tinydtls kept the first ClientKeyExchange's
    identity and ignored a later one, so ClientKeyExchange (a valid key), ClientKeyExchange
    (another identity), ChangeCipherSpec, Finished completed under the first key. The
    transport now ends the handshake on a second ClientKeyExchange that is not a byte-for-byte
    retransmission of the first, and audits it; a retransmitted one still completes."""
    key = lock.mint()
    sul = LockSul(lock.port, (key.identity.encode(), key.psk.encode()), lock.data_dir / "relay.log")
    try:
        outputs = sul.query(("CH", "CH_COOKIE", "CKE", "CKE_UNKNOWN", "CCS", "FIN", "APP"))
        assert "CONNECTED" not in outputs[-2] and "RELAY_ON" not in outputs[-1], outputs
        retransmitted = sul.query(("CH", "CH_COOKIE", "CKE", "CKE", "CCS", "FIN"))
        assert retransmitted[-1] == "CCS+FIN+CONNECTED", retransmitted
    finally:
        sul.close()
    reasons = lock.audit_reasons_once("a second, different ClientKeyExchange")
    assert "handshake refused: a second, different ClientKeyExchange" in reasons, reasons


@pytest.mark.peer
def test_after_the_handshake_only_a_retransmitted_final_flight_is_answered(
    lock: LockProcess,
) -> None:
    """Found by learning (lock-server model): once connected, tinydtls answered any
    handshake message (a new ClientHello, a ClientKeyExchange with another identity) with
    its final flight, as for a retransmission, so the lock looked as if it completed a
    handshake under an identity that is not its key's. Now only the client's final flight
    again (retransmitted because the lock's Finished was lost) gets the final flight; the
    others are dropped and the session goes on. (After its ChangeCipherSpec the mapper
    sends handshake messages under the session's keys, as a renegotiating client would;
    a retransmitting one repeats its flight as it was.)"""
    key = lock.mint()
    sul = LockSul(lock.port, (key.identity.encode(), key.psk.encode()), lock.data_dir / "relay.log")
    handshake = ("CH", "CH_COOKIE", "CKE", "CCS", "FIN")
    try:
        stranger = sul.query((*handshake, "CKE_UNKNOWN", "CH", "CH_COOKIE"))
        assert stranger[-3:] == ["NONE", "NONE", "NONE"], stranger
        assert sul.query((*handshake, "REPEAT"))[-1] == "CCS+FIN"  # our Finished was lost
        assert sul.query((*handshake, "CKE"))[-1] == "NONE"  # under the session's keys: new
        assert sul.query((*handshake, "CKE_UNKNOWN", "APP"))[-1] == "APP(2.04)+RELAY_ON"
    finally:
        sul.close()


@pytest.mark.peer
def test_after_the_locks_fatal_alert_a_peer_starts_over(lock: LockProcess) -> None:
    """Found by learning (lock-server model): after tinydtls answered an unexpected message
    with a fatal alert it kept the peer's half-done handshake, and later messages carried it
    on from there (a tangle of states in the model). The transport now forgets the peer
    (RFC 5246 7.2.2): what follows is a new handshake from its ClientHello."""
    key = lock.mint()
    sul = LockSul(lock.port, (key.identity.encode(), key.psk.encode()), lock.data_dir / "relay.log")
    try:
        broken = ("CH", "CH_COOKIE", "CKE", "CH", "FIN")
        outputs = sul.query((*broken, "CH", "CH_COOKIE", "CKE", "CCS", "FIN", "APP"))
    finally:
        sul.close()
    assert outputs[4] == "ALERT(fatal,10)", outputs
    assert outputs[5:] == ["HVR", "SH+SHD", "NONE", "NONE", "CCS+FIN+CONNECTED",
                           "APP(2.04)+RELAY_ON"], outputs  # fmt: skip
