"""The host's side of the eLock APDUs, for the CLI, the bench and the tests.

A transmit function (bytes -> bytes) is all it needs, so the same calls run
against the applet in process (``Applet.process``) or through PC/SC
(``pcsc_transmit``). It follows 61xx with GET RESPONSE, and turns a final
status word other than 9000 into ``CardError``. The key host (key_client/)
may copy these few lines; it should not import the applet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.apdu import exchange
from elock_common.container import KeyContainer, parse_list
from firmware.apdu import command
from firmware.personalization import CHALLENGE_BYTES, SealingKeys

Transmit = Callable[[bytes], bytes]


class CardError(Exception):
    """The card answered with a status word other than 9000."""

    def __init__(self, sw: int, what: str) -> None:
        super().__init__(f"{what}: card answered {sw:04X}")
        self.sw = sw


def transceive(transmit: Transmit, apdu: bytes, what: str = "command") -> bytes:
    """Send *apdu*, collect a chained response, return its data; CardError if not 9000."""
    body, sw = exchange(transmit, apdu)
    if sw != 0x9000:
        raise CardError(sw, what)
    return body


def select(transmit: Transmit) -> None:
    transceive(transmit, command(c.CLA_ISO, c.INS_SELECT, 0x04, 0x00, c.AID), "SELECT")


def list_containers(transmit: Transmit) -> list[KeyContainer]:
    return parse_list(transceive(transmit, command(c.CLA_PROPRIETARY, c.INS_LIST, le=256), "LIST"))


def card_certificate(transmit: Transmit) -> bytes:
    """GET DATA 7F21: the card's certificate, DER (firmware/identity.py)."""
    apdu = command(c.CLA_ISO, 0xCA, 0x7F, 0x21, le=256)
    return transceive(transmit, apdu, "GET DATA (certificate)")


def verify_pin(transmit: Transmit, pin: bytes) -> None:
    transceive(transmit, command(c.CLA_ISO, c.INS_VERIFY, 0x00, c.P2_PIN_CARD, pin), "VERIFY")


def _sealed(transmit: Transmit, transport_key: bytes, ins: int, plaintext: bytes) -> bytes:
    keys = SealingKeys(transport_key)
    challenge = transceive(
        transmit,
        command(c.CLA_ISO, c.INS_GET_CHALLENGE, le=CHALLENGE_BYTES),
        "GET CHALLENGE",
    )
    header = bytes((c.CLA_SEALED, ins, 0, 0))
    data = keys.seal(challenge, header, plaintext)
    answer = transceive(transmit, command(c.CLA_SEALED, ins, 0, 0, data, le=256), f"{ins:02X}")
    return keys.check_response(challenge, header, answer)


def install(transmit: Transmit, transport_key: bytes, container: KeyContainer) -> int:
    """PUT CONTAINER; returns the id the card stored it under."""
    body = _sealed(transmit, transport_key, c.INS_PUT_CONTAINER, container.to_tlv())
    return body[0]


def delete(transmit: Transmit, transport_key: bytes, container_id: int) -> None:
    plain = tlv.encode(c.TAG_ID, bytes([container_id]))
    _sealed(transmit, transport_key, c.INS_DELETE_CONTAINER, plain)


def set_pin(transmit: Transmit, transport_key: bytes, pin: bytes, tries: int) -> None:
    plain = tlv.encode_all([(c.TAG_PIN, pin), (c.TAG_PIN_TRIES, bytes([tries]))])
    _sealed(transmit, transport_key, c.INS_SET_PIN, plain)


@dataclass
class OpenStep:
    """One answer of OPEN, DATAGRAMS or TIMER."""

    state: int
    datagrams: list[bytes] = field(default_factory=list)
    timer_ms: int | None = None
    code: int | None = None
    payload: bytes = b""
    reason: str = ""
    alert: int | None = None
    progress: int = c.PROGRESS_NO_ANSWER
    failure: int | None = None

    @property
    def code_string(self) -> str:
        return "" if self.code is None else f"{self.code >> 5}.{self.code & 0x1F:02d}"

    @classmethod
    def parse(cls, data: bytes) -> OpenStep:
        allowed = (c.TAG_STATE, c.TAG_TIMER, c.TAG_COAP_CODE, c.TAG_COAP_PAYLOAD)
        ended = (c.TAG_REASON, c.TAG_ALERT, c.TAG_PROGRESS, c.TAG_FAILURE)
        r = tlv.TlvReader(data, (*allowed, *ended), (c.TAG_DATAGRAM_OUT,))
        code = r.optional(c.TAG_COAP_CODE)
        timer = r.optional(c.TAG_TIMER)
        alert = r.optional(c.TAG_ALERT)
        failure = r.optional(c.TAG_FAILURE)
        return cls(
            state=r.uint(c.TAG_STATE, 1),
            datagrams=r.repeated(c.TAG_DATAGRAM_OUT),
            timer_ms=int.from_bytes(timer, "big") if timer is not None else None,
            code=code[0] if code else None,
            payload=r.optional(c.TAG_COAP_PAYLOAD) or b"",
            reason=(r.optional(c.TAG_REASON) or b"").decode("ascii", "replace"),
            alert=alert[0] if alert else None,
            progress=r.uint(c.TAG_PROGRESS, 1, c.PROGRESS_NO_ANSWER),
            failure=failure[0] if failure else None,
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _now_tlv(now: int | None) -> bytes:
    return tlv.encode(c.TAG_NOW, (now_ms() if now is None else now).to_bytes(8, "big"))


def open_begin(
    transmit: Transmit, container_id: int, now: int | None = None, retransmit_ms: int | None = None
) -> OpenStep:
    data = tlv.encode(c.TAG_CONTAINER, bytes([container_id])) + _now_tlv(now)
    if retransmit_ms is not None:
        data += tlv.encode(c.TAG_RETRANSMIT_MS, retransmit_ms.to_bytes(2, "big"))
    return _step(transmit, c.INS_OPEN, data)


def open_datagrams(transmit: Transmit, received: list[bytes], now: int | None = None) -> OpenStep:
    data = _now_tlv(now) + tlv.encode_all((c.TAG_DATAGRAM_IN, d) for d in received)
    return _step(transmit, c.INS_DATAGRAMS, data)


def open_timer(transmit: Transmit, now: int | None = None) -> OpenStep:
    return _step(transmit, c.INS_TIMER, _now_tlv(now))


def _step(transmit: Transmit, ins: int, data: bytes) -> OpenStep:
    apdu = command(c.CLA_PROPRIETARY, ins, 0, 0, data, le=256)
    return OpenStep.parse(transceive(transmit, apdu, f"{ins:02X}"))


def pcsc_transmit(reader_name: str) -> tuple[Transmit, Callable[[], None]]:
    """A transmit function over PC/SC (pyscard, imported only here) and its closer."""
    from smartcard.System import readers

    matches = [r for r in readers() if str(r) == reader_name]
    if not matches:
        raise CardError(0x6F00, f"no PC/SC reader named {reader_name!r}")
    connection = matches[0].createConnection()
    connection.connect()

    def transmit(apdu: bytes) -> bytes:
        data, sw1, sw2 = connection.transmit(list(apdu))
        return bytes(data) + bytes((sw1, sw2))

    def close() -> None:
        connection.disconnect()
        release = getattr(connection, "release", None)  # pyscard >= 2.1 holds a context
        if release is not None:
            release()

    return transmit, close
