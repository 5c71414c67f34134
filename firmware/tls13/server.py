"""``Tls13Server``: a sans-I/O TLS 1.3 server with mandatory client certificates.

Bytes in with ``receive`` (records in any split), bytes out with
``data_to_send``, events out with ``next_event`` (``connection.py``); no
socket, thread or clock (``now`` is given), randomness from ``rng``. Only local
misuse raises (``TlsUsageError``); the peer's mistakes end in an alert.

Which handshake message each state accepts is the table ``_EXPECTED``; a
message not in it is unexpected_message. The handshake steps themselves are
the functions of ``handshake.py``.
"""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.tls13 import auth_messages as am
from firmware.tls13 import handshake as hs
from firmware.tls13.alerts import IllegalParameter, UnexpectedMessage
from firmware.tls13.certificates import verify_client_chain
from firmware.tls13.connection import RecordConnection
from firmware.tls13.events import HandshakeCompleted, ServerState
from firmware.tls13.key_schedule import KeySchedule, Transcript, next_traffic_secret
from firmware.tls13.messages import (
    ClientHello,
    HandshakeType,
    pull_client_hello,
)
from firmware.tls13.records import MAX_PLAINTEXT, ContentType, RecordProtection, plaintext_record
from firmware.tls13.wire import handshake_message

S = ServerState
_EXPECTED: dict[ServerState, HandshakeType] = {
    S.EXPECT_CLIENT_HELLO: HandshakeType.CLIENT_HELLO,
    S.EXPECT_RETRIED_CLIENT_HELLO: HandshakeType.CLIENT_HELLO,
    S.EXPECT_CLIENT_CERTIFICATE: HandshakeType.CERTIFICATE,
    S.EXPECT_CLIENT_CERTIFICATE_VERIFY: HandshakeType.CERTIFICATE_VERIFY,
    S.EXPECT_CLIENT_FINISHED: HandshakeType.FINISHED,
    S.CONNECTED: HandshakeType.KEY_UPDATE,
}


class Tls13Server(RecordConnection):
    def __init__(
        self,
        *,
        certificate_chain: list[x509.Certificate],
        private_key: ec.EllipticCurvePrivateKey,
        client_trust_anchor: x509.Certificate,
        now: float,
        rng: hs.Rng = os.urandom,
        max_record: int = MAX_PLAINTEXT,
    ) -> None:
        super().__init__(max_record)
        self._credentials = hs.make_credentials(certificate_chain, private_key, client_trust_anchor)
        self._now = now
        self._rng = rng
        self._transcript = Transcript()
        self._schedule: KeySchedule | None = None
        self._first_hello: ClientHello | None = None
        self._sent_ccs = False
        self._peer: x509.Certificate | None = None

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        return self._peer if self._state is S.CONNECTED else None

    # -- handshake ----------------------------------------------------------------------

    def _handle_handshake(self, msg_type: int, body: bytes, raw: bytes) -> None:
        if _EXPECTED.get(self._state) != msg_type:
            raise UnexpectedMessage(f"handshake message {msg_type} in state {self._state.name}")
        if msg_type == HandshakeType.CLIENT_HELLO:
            self._on_client_hello(body, raw)
        elif msg_type == HandshakeType.CERTIFICATE:
            certificate = am.pull_certificate(body)
            if certificate.context:
                raise IllegalParameter("client Certificate with a request context")
            self._peer = verify_client_chain(
                certificate.certificates, self._credentials.anchor, self._now
            )
            self._transcript.add(raw)
            self._set_state(S.EXPECT_CLIENT_CERTIFICATE_VERIFY)
        elif msg_type == HandshakeType.CERTIFICATE_VERIFY:
            verify = am.pull_certificate_verify(body)
            assert self._peer is not None
            hs.verify_client_signature(self._peer, verify, self._transcript.digest())
            self._transcript.add(raw)
            self._set_state(S.EXPECT_CLIENT_FINISHED)
        elif msg_type == HandshakeType.FINISHED:
            self._on_client_finished(body)
        else:
            self._on_key_update(body)

    def _on_client_hello(self, body: bytes, raw: bytes) -> None:
        hello = pull_client_hello(body)
        self._assembler.require_empty("ClientHello")
        if self._first_hello is None:
            share = hs.read_offer(hello)
            self._transcript.add(raw)
            if share is None:
                self._first_hello = hello
                self._transcript.restart_for_retry()
                retry = hs.hello_retry_request(hello)
                self._transcript.add(retry)
                self._send(ContentType.HANDSHAKE, retry)
                self._send_compat_ccs(hello)
                self._set_state(S.EXPECT_RETRIED_CLIENT_HELLO)
                return
        else:
            share = hs.check_retried_hello(self._first_hello, hello)
            self._transcript.add(raw)
        peer_key = hs.client_public_key(share)
        key = hs.ephemeral_key(self._rng)
        reply = hs.server_hello(hello, self._rng, key)
        self._transcript.add(reply)
        self._send(ContentType.HANDSHAKE, reply)
        self._send_compat_ccs(hello)
        schedule = KeySchedule(key.exchange(ec.ECDH(), peer_key), self._transcript.digest())
        self._schedule = schedule
        self._read = RecordProtection(schedule.client_handshake)
        self._write = RecordProtection(schedule.server_handshake)
        flight = hs.server_flight(self._credentials, self._transcript, schedule)
        self._send(ContentType.HANDSHAKE, flight)
        schedule.derive_application(self._transcript.digest())
        self._write = RecordProtection(schedule.server_application)
        self._set_state(S.EXPECT_CLIENT_CERTIFICATE)

    def _send_compat_ccs(self, hello: ClientHello) -> None:
        """Middlebox compatibility (RFC 8446 D.4): one CCS after our first message."""
        if hello.legacy_session_id and not self._sent_ccs:
            self._out += plaintext_record(ContentType.CHANGE_CIPHER_SPEC, b"\x01")
            self._sent_ccs = True

    def _on_client_finished(self, body: bytes) -> None:
        schedule = self._schedule
        assert schedule is not None and self._peer is not None
        hs.verify_client_finished(schedule, am.pull_finished(body), self._transcript.digest())
        self._assembler.require_empty("client Finished")
        self._read = RecordProtection(schedule.client_application)
        schedule.forget_handshake()
        self._set_state(S.CONNECTED)
        self._events.append(HandshakeCompleted(self._peer, retried=self._first_hello is not None))

    def _on_key_update(self, body: bytes) -> None:
        """RFC 8446 4.6.3: take the peer's next key; answer update_requested with ours."""
        update = am.pull_key_update(body)
        schedule = self._schedule
        assert schedule is not None
        self._assembler.require_empty("KeyUpdate")
        schedule.client_application = next_traffic_secret(schedule.client_application)
        self._read = RecordProtection(schedule.client_application)
        if update.update_requested:
            reply = am.KeyUpdate(update_requested=False)
            message = handshake_message(HandshakeType.KEY_UPDATE, am.push_key_update(reply))
            self._send(ContentType.HANDSHAKE, message)
            schedule.server_application = next_traffic_secret(schedule.server_application)
            self._write = RecordProtection(schedule.server_application)
