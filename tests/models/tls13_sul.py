"""SUL 2: the card's TLS 1.3 server (``firmware/tls13``), reached through its TLS APDUs.

The learner plays the key server. The mapper (``ClientMapper``) builds a real
TLS 1.3 client flight per abstract input with the applet's own codec (the
brief allows it in tests): an ECDHE P-256 ClientHello, the client Certificate
(signed by the key-server CA, or ``CERT_UNKNOWN`` from a CA the card does not
trust), a CertificateVerify signed with the key of the last certificate sent,
Finished, a provisioning LIST command as application data, a fatal alert.
``REPEAT`` sends the last bytes again, unchanged, as an APDU host does that lost
the answer. Each query gets a fresh applet (SELECT, RESET TLS); the bytes go
through ``Applet.process`` in 240-byte TLS RECORDS blocks and GET RESPONSE, as
draft-urien-tls-se's host sends them, and the status word is part of the answer
(``9001``: session open, reported as ``CONNECTED`` the first time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aalpy.base import SUL
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from elock_common import card_protocol as c
from elock_common import pki
from elock_common.provisioning_wire import encode_list
from firmware.applet import Applet
from firmware.provisioning_channel import KeyringContainerStore
from firmware.store import Eeprom, Store
from firmware.tls13 import auth_messages as am
from firmware.tls13.key_schedule import (
    KeySchedule,
    Transcript,
    certificate_verify_content,
    finished_verify_data,
)
from firmware.tls13.messages import (
    AES_128_GCM_SHA256,
    ECDSA_SECP256R1_SHA256,
    HRR_RANDOM,
    SECP256R1,
    TLS13,
    ClientHello,
    HandshakeType,
    KeyShareEntry,
    pull_server_hello,
    push_client_hello,
)
from firmware.tls13.records import ContentType, Record, RecordProtection, plaintext_record
from firmware.tls13.wire import handshake_message
from firmware.tls_apdu import SW_TLS_END, SW_TLS_OPEN, TlsApduHandler
from firmware.tls_endpoint import TlsEndpoint
from tests.models.properties import CONNECTED, Spec

ALPHABET = ["CH", "CERT", "CERT_UNKNOWN", "CV", "FIN", "CCS", "APP", "ALERT", "REPEAT"]
SMALL_ALPHABET = ["CH", "CERT", "CERT_UNKNOWN", "CV", "FIN", "APP"]
SPEC = Spec(
    happy_path=("CH", "CERT", "CV", "FIN"),
    alert_inputs=frozenset({"ALERT"}),
    repeat_input="REPEAT",
    valid_identity=frozenset({"CERT"}),
    unknown_identity=frozenset({"CERT_UNKNOWN"}),
    quiet_outputs=frozenset({"NO_SESSION"}),
)
_NAMES = {2: "SH", 8: "EE", 13: "CR", 11: "CERT", 15: "CV", 20: "FIN", 24: "KU"}


@dataclass(frozen=True)
class Credentials:
    """A card and two clients: one the card trusts, one from a stranger's CA."""

    card_cert: x509.Certificate
    card_key: ec.EllipticCurvePrivateKey
    anchor: x509.Certificate
    client: tuple[bytes, ec.EllipticCurvePrivateKey]
    stranger: tuple[bytes, ec.EllipticCurvePrivateKey]

    @classmethod
    def make(cls) -> Credentials:
        now = time.time()
        ks_cert, ks_key = pki.make_ca("key-server CA", now=now)
        se_cert, se_key = pki.make_ca("SE issuer CA", now=now)
        other_cert, other_key = pki.make_ca("someone else's CA", now=now)
        card_key = ec.generate_private_key(ec.SECP256R1())
        card = pki.issue_se_certificate(se_cert, se_key, card_key.public_key(), "card-19", now)
        return cls(
            card,
            card_key,
            ks_cert,
            _client(ks_cert, ks_key, now),
            _client(other_cert, other_key, now),
        )


def _client(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: float
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_tls_certificate(
        ca_cert, ca_key, key.public_key(), "key-server", now=now, client=True
    )
    return cert.public_bytes(serialization.Encoding.DER), key


class ClientMapper:
    """The key server's end, one message at a time, computing what it can."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.transcript = Transcript()
        self.schedule: KeySchedule | None = None
        self.read: RecordProtection | None = None
        self.write: RecordProtection | None = None
        self.signer: ec.EllipticCurvePrivateKey | None = None
        self.last = b""

    def concrete(self, letter: str) -> bytes:
        if letter == "REPEAT":
            return self.last
        self.last = self._build(letter)
        return self.last

    def _build(self, letter: str) -> bytes:
        if letter == "CH":
            point = self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            hello = ClientHello(
                random=bytes(32),
                legacy_session_id=b"",
                cipher_suites=[AES_128_GCM_SHA256],
                supported_versions=[TLS13],
                supported_groups=[SECP256R1],
                signature_algorithms=[ECDSA_SECP256R1_SHA256],
                key_shares=[KeyShareEntry(SECP256R1, point)],
            )
            return self._handshake(HandshakeType.CLIENT_HELLO, push_client_hello(hello))
        if letter in ("CERT", "CERT_UNKNOWN"):
            der, self.signer = (
                self.credentials.client if letter == "CERT" else self.credentials.stranger
            )
            return self._handshake(
                HandshakeType.CERTIFICATE, am.push_certificate(am.Certificate(b"", [der]))
            )
        if letter == "CV":
            signer = self.signer or self.credentials.client[1]
            content = certificate_verify_content(self.transcript.digest(), server=False)
            signature = signer.sign(content, ec.ECDSA(hashes.SHA256()))
            body = am.push_certificate_verify(
                am.CertificateVerify(ECDSA_SECP256R1_SHA256, signature)
            )
            return self._handshake(HandshakeType.CERTIFICATE_VERIFY, body)
        if letter == "FIN":
            secret = self.schedule.client_handshake if self.schedule is not None else bytes(32)
            data = self._handshake(
                HandshakeType.FINISHED, finished_verify_data(secret, self.transcript.digest())
            )
            if self.schedule is not None and self.schedule.client_application:
                self.write = RecordProtection(self.schedule.client_application)
            return data
        if letter == "CCS":
            return plaintext_record(ContentType.CHANGE_CIPHER_SPEC, b"\x01")
        if letter == "APP":
            return self._seal(ContentType.APPLICATION_DATA, encode_list())
        if letter == "ALERT":
            return self._seal(ContentType.ALERT, b"\x02\x28")
        raise ValueError(letter)

    def _handshake(self, msg_type: int, body: bytes) -> bytes:
        message = handshake_message(msg_type, body)
        self.transcript.add(message)
        return self._seal(ContentType.HANDSHAKE, message)

    def _seal(self, content_type: ContentType, data: bytes) -> bytes:
        if self.write is None:
            return plaintext_record(content_type, data)
        return self.write.seal(content_type, data)

    def observe(self, data: bytes) -> list[str]:
        out: list[str] = []
        pos = 0
        while pos + 5 <= len(data):
            length = int.from_bytes(data[pos + 3 : pos + 5], "big")
            record = Record(data[pos], data[pos : pos + 5], data[pos + 5 : pos + 5 + length])
            pos += 5 + length
            out += self._record(record)
        return out

    def _record(self, record: Record) -> list[str]:
        content_type, content = record.content_type, record.fragment
        if content_type == ContentType.APPLICATION_DATA:
            if self.read is None:
                return ["ENCRYPTED"]
            try:
                content_type, content = self.read.open(record)
            except Exception:
                return ["ENCRYPTED"]
        if content_type == ContentType.CHANGE_CIPHER_SPEC:
            return ["CCS"]
        if content_type == ContentType.ALERT:
            level = "fatal" if content[:1] == b"\x02" else "warning"
            return [f"ALERT({level},{content[1] if len(content) > 1 else '?'})"]
        if content_type == ContentType.APPLICATION_DATA:
            return ["APP"]
        out = []
        pos = 0
        while pos + 4 <= len(content):
            msg_type, length = content[pos], int.from_bytes(content[pos + 1 : pos + 4], "big")
            raw = content[pos : pos + 4 + length]
            pos += 4 + length
            out.append(self._server_message(msg_type, raw))
        return out

    def _server_message(self, msg_type: int, raw: bytes) -> str:
        if msg_type == HandshakeType.SERVER_HELLO:
            hello = pull_server_hello(raw[4:])
            if hello.random == HRR_RANDOM:
                return "HRR"
            self.transcript.add(raw)
            if hello.key_share is not None:
                peer = ec.EllipticCurvePublicKey.from_encoded_point(
                    ec.SECP256R1(), hello.key_share.key_exchange
                )
                shared = self.key.exchange(ec.ECDH(), peer)
                self.schedule = KeySchedule(shared, self.transcript.digest())
                self.read = RecordProtection(self.schedule.server_handshake)
                self.write = RecordProtection(self.schedule.client_handshake)
            return "SH"
        self.transcript.add(raw)
        if msg_type == HandshakeType.FINISHED and self.schedule is not None:
            self.schedule.derive_application(self.transcript.digest())
            self.read = RecordProtection(self.schedule.server_application)
        return _NAMES.get(msg_type, f"HS{msg_type}")


class Tls13ApduSul(SUL):  # type: ignore[misc]
    def __init__(self, credentials: Credentials | None = None) -> None:
        super().__init__()
        self.credentials = credentials or Credentials.make()
        self.applet: Applet | None = None
        self.mapper = ClientMapper(self.credentials)
        self.opened = False

    def pre(self) -> None:
        cred = self.credentials
        applet = Applet(Store(Eeprom()))
        endpoint = TlsEndpoint(
            certificate_chain=[cred.card_cert],
            private_key=cred.card_key,
            client_trust_anchor=cred.anchor,
            store=KeyringContainerStore(applet.keyring),
        )
        for entry in TlsApduHandler(endpoint, clock=time.time).routes():
            applet.registry.add(entry)
        self.applet = applet
        self.mapper = ClientMapper(cred)
        self.opened = False
        assert self._apdu(bytes([0x00, c.INS_SELECT, 0x04, 0x00, len(c.AID)]) + c.AID)[1] == 0x9000
        assert self._apdu(bytes.fromhex("00D8000000"))[1] == 0x9000  # RESET TLS

    def post(self) -> None:
        self.applet = None

    def _apdu(self, apdu: bytes) -> tuple[bytes, int]:
        assert self.applet is not None
        response = self.applet.process(apdu)
        return response[:-2], int.from_bytes(response[-2:], "big")

    def _carry(self, records: bytes) -> tuple[bytes, int]:
        blocks = [records[i : i + 240] for i in range(0, len(records), 240)]
        answer, sw = b"", 0x9000
        for i, block in enumerate(blocks):
            p2 = (0x01 if i == 0 else 0) | (0x02 if i == len(blocks) - 1 else 0)
            data, sw = self._apdu(bytes([0x00, 0xD8, 0x00, p2, len(block)]) + block + b"\x00")
            answer += data
            while sw >> 8 == 0x61:
                data, sw = self._apdu(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
                answer += data
            if sw not in (0x9000, SW_TLS_OPEN, SW_TLS_END):
                break
        return answer, sw

    def step(self, letter: str | None) -> str:
        assert letter is not None
        records = self.mapper.concrete(letter)
        if not records:
            return "NONE"
        answer, sw = self._carry(records)
        out = self.mapper.observe(answer)
        if sw == SW_TLS_OPEN and not self.opened:
            self.opened = True
            out.append(CONNECTED)
        elif sw == SW_TLS_END:
            out.append("ENDED")
        elif sw == 0x6985:
            out.append("NO_SESSION")
        elif sw not in (0x9000, SW_TLS_OPEN):
            out.append(f"SW{sw:04X}")
        return "+".join(out) if out else "NONE"
