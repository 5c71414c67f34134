"""Test-side DTLS 1.2 PSK building blocks for the mappers, on the applet's own codec.

The mappers play the other end of a handshake in whatever order the learner
asks, so they keep a loose context (randoms, transcript, keys) and compute what
they can: a Finished whose keys are unknown is sent with zero verify data, as
DTLS-Fuzzer's mapper does. Records are sealed with ``firmware.dtls``'s
``WriteState`` (the brief allows reusing the applet's codec in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from firmware.dtls.flight import WriteState
from firmware.dtls.fragments import pull_fragments
from firmware.dtls.records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    CcmProtection,
    KeyBlock,
    Record,
    RecordError,
    extended_master_secret,
    finished_verify_data,
    master_secret,
    parse_records,
    psk_premaster_secret,
    sha256,
)

HANDSHAKE_NAMES = {
    0: "HELLO_REQUEST",
    1: "CH",
    2: "SH",
    3: "HVR",
    12: "SKE",
    14: "SHD",
    16: "CKE",
    20: "FIN",
}

Flight = list[tuple[int, int, bytes]]  # (content type, epoch, payload), as firmware.dtls.flight


@dataclass
class Session:
    """What one side of the mapper knows about the handshake so far."""

    psk: bytes
    client_random: bytes = b""
    server_random: bytes = b""
    extended_master_secret: bool = True
    transcript: list[bytes] = field(default_factory=list)
    master: bytes | None = None
    keys: KeyBlock | None = None

    def restart(self, client_hello: bytes) -> None:
        self.transcript = [client_hello]
        self.master = None
        self.keys = None

    def add(self, message: bytes) -> None:
        if message not in self.transcript:  # a retransmission is hashed once
            self.transcript.append(message)

    def transcript_hash(self) -> bytes:
        return sha256(b"".join(self.transcript))

    def derive(self) -> None:
        """After the ClientKeyExchange is in the transcript (RFC 7627 session hash)."""
        if not self.client_random or not self.server_random:
            return
        premaster = psk_premaster_secret(self.psk)
        if self.extended_master_secret:
            self.master = extended_master_secret(premaster, self.transcript_hash())
        else:
            self.master = master_secret(premaster, self.client_random, self.server_random)
        self.keys = KeyBlock.derive(self.master, self.client_random, self.server_random)

    def verify_data(self, label: bytes) -> bytes:
        if self.master is None:
            return bytes(12)
        return finished_verify_data(self.master, label, self.transcript_hash())

    def protection(self, *, client: bool) -> CcmProtection | None:
        if self.keys is None:
            return None
        if client:
            return CcmProtection(self.keys.client_write_key, self.keys.client_write_iv)
        return CcmProtection(self.keys.server_write_key, self.keys.server_write_iv)


class Writer:
    """Our records, epoch by epoch; ``flight`` remembers the last one for REPEAT."""

    def __init__(self) -> None:
        self.epochs = [WriteState(0)]
        self.last_flight: Flight = []

    @property
    def epoch(self) -> int:
        return len(self.epochs) - 1

    def change_cipher_spec(self, protection: CcmProtection | None) -> None:
        """Move to the next epoch; without keys we have nothing to seal with and stay put."""
        if protection is not None:
            self.epochs.append(WriteState(self.epoch + 1, protection))

    def seal(self, flight: Flight) -> bytes:
        return b"".join(self.epochs[epoch].protect(ct, payload) for ct, epoch, payload in flight)

    def send(self, records: list[tuple[int, bytes]]) -> bytes:
        flight = [(ct, self.epoch, payload) for ct, payload in records]
        self.last_flight = flight
        return self.seal(flight)

    def repeat(self) -> bytes:
        return self.seal(self.last_flight)


@dataclass
class Seen:
    """One record the peer sent, opened if we could."""

    record: Record
    payload: bytes | None  # None: protected and we had no key (or it did not authenticate)


def read_datagram(data: bytes, read: Callable[[int], CcmProtection | None]) -> Iterator[Seen]:
    """The records of a datagram, opened with ``read(epoch)`` asked afresh for each one."""
    try:
        records = parse_records(data, 2**14 + 16)
    except RecordError:
        return
    for record in records:
        if record.epoch == 0:
            yield Seen(record, record.fragment)
            continue
        protection = read(record.epoch)
        try:
            payload = protection.open(record) if protection is not None else None
        except RecordError:
            payload = None
        yield Seen(record, payload)


def token(seen: Seen) -> list[str]:
    """Abstract names of what one record carried."""
    ct, payload = seen.record.content_type, seen.payload
    if ct == CT_CHANGE_CIPHER_SPEC:
        return ["CCS"]
    if ct == CT_APPLICATION_DATA:
        return ["APP" if payload is not None else "APP(undecryptable)"]
    if ct == CT_ALERT:
        if payload is None or len(payload) != 2:
            return ["ALERT(encrypted)"]
        level = "fatal" if payload[0] == 2 else "warning"
        return [f"ALERT({level},{payload[1]})"]
    if payload is None:
        return ["HANDSHAKE(encrypted)"]
    try:
        return [HANDSHAKE_NAMES.get(f.msg_type, f"HS{f.msg_type}") for f in pull_fragments(payload)]
    except Exception:
        return ["HANDSHAKE(malformed)"]


def join(tokens: list[str]) -> str:
    return "+".join(tokens) if tokens else "NONE"


__all__ = [
    "CT_ALERT",
    "CT_APPLICATION_DATA",
    "CT_CHANGE_CIPHER_SPEC",
    "CT_HANDSHAKE",
    "Seen",
    "Session",
    "Writer",
    "join",
    "read_datagram",
    "token",
]
