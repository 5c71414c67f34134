"""The lock-sync wire format: round trips, strict parsing, proofs and sealing."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elock_common import LockSecret
from elock_common.lock_sync import (
    MAX_MESSAGE,
    MAX_REVOKED,
    PROTOCOL,
    AuditAck,
    AuditRow,
    AuditUpload,
    Challenge,
    Hello,
    Ping,
    Pong,
    Proof,
    Refused,
    RevocationList,
    RevocationsHeld,
    Sealer,
    SyncAuthError,
    SyncFormatError,
    Welcome,
    decode,
    encode,
    hello_digest,
    lock_proof,
    server_proof,
    verify,
)

LOCK_ID = str(uuid.uuid4())
HELLO = hello_digest('{"type":"hello"}')
ROW = AuditRow(1, 1_700_000_000.5, "0123456789ab", "192.0.2.1:5684", "open", "granted", "opened")


def _pair() -> tuple[Sealer, Sealer]:
    key = LockSecret.generate().derive_sync_key()
    ln, sn = secrets.token_bytes(16), secrets.token_bytes(16)
    return (
        Sealer.for_session(key, LOCK_ID, ln, sn, hello=HELLO, lock=True),
        Sealer.for_session(key, LOCK_ID, ln, sn, hello=HELLO, lock=False),
    )


@pytest.mark.parametrize(
    "message",
    [
        Hello(LOCK_ID, b"n" * 16, 1_700_000_000.25, 3, 12345, 300.0),
        Challenge(b"s" * 16, b"p" * 32),
        Proof(b"q" * 32),
        Refused("lock retired"),
    ],
)
def test_unsealed_round_trip(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "lock_sends"),
    [
        (Welcome(1_700_000_000.0, 7, 3), False),
        (RevocationList(4, ("0123456789ab", "ba9876543210")), False),
        (RevocationsHeld(4), True),
        (AuditUpload((ROW, AuditRow(2, 1.0, None, "?", "handshake", "refused", "bad"))), True),
        (AuditAck(2), False),
        (Ping(1_700_000_000.0, -0.25), True),
        (Ping(1_700_000_000.0, None), True),
        (Pong(1_700_000_000.0, 1_700_000_001.0), False),
    ],
)
def test_sealed_round_trip(message: object, lock_sends: bool) -> None:
    lock, server = _pair()
    sender, receiver = (lock, server) if lock_sends else (server, lock)
    assert receiver.open(sender.seal(message)) == message  # type: ignore[arg-type]


def test_sealed_messages_refuse_replay_reorder_reflection_and_tampering() -> None:
    lock, server = _pair()
    first, second = lock.seal(RevocationsHeld(1)), lock.seal(RevocationsHeld(2))
    with pytest.raises(SyncAuthError, match="out of sequence"):
        server.open(second)
    assert server.open(first) == RevocationsHeld(1)
    with pytest.raises(SyncAuthError, match="out of sequence"):
        server.open(first)  # replayed
    with pytest.raises(SyncAuthError, match="MAC"):
        lock.open(server.seal(AuditAck(1)).replace('"through":1', '"through":9'))
    with pytest.raises(SyncAuthError, match="MAC"):
        server.open(server.seal(AuditAck(1)))  # reflected back at its sender
    other, _ = _pair()
    with pytest.raises(SyncAuthError, match="MAC"):
        server.open(other.seal(RevocationsHeld(3)))  # another session's key


def test_proofs_bind_both_nonces_and_the_direction() -> None:
    key = LockSecret.generate().derive_sync_key()
    ln, sn = secrets.token_bytes(16), secrets.token_bytes(16)
    proof = lock_proof(key, LOCK_ID, ln, sn, hello=HELLO)
    verify(lock_proof(key, LOCK_ID, ln, sn, hello=HELLO), proof, "lock")
    with pytest.raises(SyncAuthError, match="lock's proof"):
        verify(lock_proof(key, LOCK_ID, ln, secrets.token_bytes(16), hello=HELLO), proof, "lock")
    with pytest.raises(SyncAuthError):
        verify(server_proof(key, LOCK_ID, ln, sn, hello=HELLO), proof, "server")  # not reflectable
    wrong = LockSecret.generate().derive_sync_key()
    with pytest.raises(SyncAuthError):
        verify(lock_proof(wrong, LOCK_ID, ln, sn, hello=HELLO), proof, "lock")


def test_proofs_and_session_key_bind_the_hello_frame() -> None:
    """The hello is not MACed: a changed hello must make every proof fail."""
    key = LockSecret.generate().derive_sync_key()
    ln, sn = secrets.token_bytes(16), secrets.token_bytes(16)
    sent = '{"revocation_version":3,"type":"hello"}'
    changed = hello_digest(sent.replace("3", "9"))
    for make in (lock_proof, server_proof):
        with pytest.raises(SyncAuthError):
            verify(make(key, LOCK_ID, ln, sn, hello=changed),
                   make(key, LOCK_ID, ln, sn, hello=hello_digest(sent)), "peer")  # fmt: skip
    assert hello_digest(sent) == hello_digest(sent.encode())  # text or binary frame
    lock = Sealer.for_session(key, LOCK_ID, ln, sn, hello=hello_digest(sent), lock=True)
    server = Sealer.for_session(key, LOCK_ID, ln, sn, hello=changed, lock=False)
    with pytest.raises(SyncAuthError, match="MAC"):
        server.open(lock.seal(RevocationsHeld(3)))


def test_sync_key_differs_from_every_psk_label() -> None:
    secret = LockSecret.generate()
    assert secret.derive_sync_key() != secret.derive_psk(b"")
    assert len(secret.derive_sync_key()) == 32


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"type":"nope"}', "unknown message type"),
        ('{"type":"proof"}', "fields wrong"),
        ('{"type":"proof","proof":"!!","x":1}', "fields wrong"),
        ('{"type":"proof","proof":"AAAA"}', "32 bytes"),
        ('{"type":"proof","proof":5}', "base64url"),
        ('{"type":"refused","reason":' + json.dumps("x" * 301) + "}", "at most 300"),
        (
            '{"type":"welcome","server_time":1,"audit_cursor":0,"revocation_version":0}',
            "must be sealed",
        ),
        (
            '{"type":"hello","lock_id":"x","nonce":"","lock_time":1,"revocation_version":0,'
            '"audit_log":1,"max_clock_skew":300,"protocol":"elock-lock-sync/2"}',
            "UUID",
        ),
        (
            '{"type":"hello","lock_id":"' + LOCK_ID + '","nonce":"' + "A" * 22 + '","lock_time":'
            'NaN,"revocation_version":0,"audit_log":1,"max_clock_skew":300,"protocol":"elock-lock-sync/2"}',
            "number",
        ),
        (
            '{"type":"hello","lock_id":"' + LOCK_ID + '","nonce":"' + "A" * 22 + '","lock_time":'
            '1,"revocation_version":-1,"audit_log":1,"max_clock_skew":300,"protocol":"elock-lock-sync/2"}',
            "integer",
        ),
        (
            '{"type":"hello","lock_id":"' + LOCK_ID + '","nonce":"' + "A" * 22 + '","lock_time":'
            '1,"revocation_version":0,"audit_log":1,"max_clock_skew":300,"protocol":"elock-lock-sync/9"}',
            "speaks",
        ),
        *(
            (
                '{"type":"hello","lock_id":"'
                + LOCK_ID
                + '","nonce":"'
                + "A" * 22
                + '","lock_time":'
                '1,"revocation_version":0,"audit_log":1,"max_clock_skew":' + skew + ","
                '"protocol":"elock-lock-sync/2"}',
                reason,
            )
            for skew, reason in [
                ("0", "1 to 86400 seconds"),
                ("1e9", "1 to 86400 seconds"),
                ("true", "number of seconds"),
                ('"300"', "number of seconds"),
                ("Infinity", "not a number"),
            ]
        ),
        (" " * (MAX_MESSAGE + 1), "larger than"),
        ('{"type":"proof","proof":' + "1" * 5000 + "}", "not JSON"),  # int() refuses it
    ],
)
def test_malformed_unsealed_messages_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(SyncFormatError, match=reason):
        decode(text)


def _sealed_body(server: Sealer, body: dict[str, object]) -> str:
    """A frame with a valid MAC around an arbitrary body: only the field checks refuse it."""
    import hashlib
    import hmac

    from elock_common.lock_sync import _b64, _canonical

    body = body | {"seq": server.sent + 1}
    server.sent += 1
    body["mac"] = _b64(hmac.digest(server.key, server.outgoing + _canonical(body), hashlib.sha256))
    return _canonical(body).decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "revocations", "version": 1, "revoked": ["XYZ"]}, "12 lowercase hex"),
        (
            {"type": "revocations", "version": 1, "revoked": ["0" * 12] * (MAX_REVOKED + 1)},
            "at most",
        ),
        ({"type": "revocations", "version": True, "revoked": []}, "integer"),
        ({"type": "audit_ack", "through": 2**60}, "integer"),
        ({"type": "pong", "lock_time": 1, "server_time": -5}, "out of range"),
        (
            {
                "type": "hello",
                "lock_id": LOCK_ID,
                "nonce": "A" * 22,
                "lock_time": 1,
                "revocation_version": 0,
                "audit_log": 1,
                "max_clock_skew": 300,
                "protocol": PROTOCOL,
            },
            "not expected",
        ),
    ],
)
def test_malformed_sealed_messages_are_refused(body: dict[str, object], reason: str) -> None:
    lock, server = _pair()
    with pytest.raises(SyncFormatError, match=reason):
        lock.open(_sealed_body(server, body))


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([], "1..200"),
        ([{"id": 1}], "exactly the fields"),
        ([ROW.__dict__ | {"id": 0}], "positive"),
        ([ROW.__dict__ | {"outcome": "maybe"}], "granted or refused"),
        ([ROW.__dict__ | {"key_id": "ZZ"}], "key_id"),
        ([ROW.__dict__ | {"reason": "r" * 301}], "at most 300"),
        ([ROW.__dict__, ROW.__dict__], "increasing"),
    ],
)
def test_malformed_audit_uploads_are_refused(rows: list[object], reason: str) -> None:
    lock, server = _pair()
    with pytest.raises(SyncFormatError, match=reason):
        server.open(_sealed_body(lock, {"type": "audit", "rows": rows}))


def test_clipped_rows_always_parse() -> None:
    row = AuditRow.clipped(5, 1.0, "not-a-key", "p" * 500, "a" * 100, "refused", "r" * 999)
    lock, server = _pair()
    assert server.open(lock.seal(AuditUpload((row,)))) == AuditUpload((row,))


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_input_raises_only_our_error(data: str | bytes) -> None:
    lock, _ = _pair()
    for parse in (decode, lock.open):
        try:
            parse(data)
        except SyncFormatError:
            pass


def test_an_integer_python_refuses_is_our_error_after_authentication_too() -> None:
    lock, _ = _pair()
    with pytest.raises(SyncFormatError, match="not JSON"):
        lock.open('{"type":"pong","seq":' + "1" * 5000 + "}")
