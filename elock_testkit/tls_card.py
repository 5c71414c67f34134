"""The card side of TLS#2 in one process, and the host side of draft-urien-tls-se.

For tests and fuzz targets that drive the applet's TLS endpoint through APDUs, as a
phone or RACS would: one way to build the applet, one way to carry records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from elock_common import card_protocol as c
from firmware.applet import Applet
from firmware.provisioning_channel import KeyringContainerStore
from firmware.store import Eeprom, Store
from firmware.tls_apdu import SW_TLS_END, SW_TLS_OPEN, TlsApduHandler
from firmware.tls_endpoint import TlsEndpoint

SELECT = bytes([0x00, c.INS_SELECT, 0x04, 0x00, len(c.AID)]) + c.AID
BLOCK = 240  # bytes of records per TLS RECORDS APDU, as the draft's host sends them
# (response data, status word) for one command APDU
Send = Callable[[bytes], tuple[bytes, int]]


def applet_with_tls(
    certificate: Any, private_key: Any, trust_anchor: Any
) -> tuple[Applet, TlsApduHandler]:
    """A fresh applet whose TLS#2 endpoint installs into its own keyring (not selected)."""
    applet = Applet(Store(Eeprom()))
    endpoint = TlsEndpoint(
        certificate_chain=[certificate],
        private_key=private_key,
        client_trust_anchor=trust_anchor,
        store=KeyringContainerStore(applet.keyring),
    )
    handler = TlsApduHandler(endpoint, clock=time.time)
    for entry in handler.routes():
        applet.registry.add(entry)
    return applet, handler


def sender(applet: Applet) -> Send:
    def send(apdu: bytes) -> tuple[bytes, int]:
        response = applet.process(apdu)
        return response[:-2], int.from_bytes(response[-2:], "big")

    return send


def carry_records(
    send: Send, records: bytes, ok: tuple[int, ...] = (0x9000, SW_TLS_OPEN, SW_TLS_END)
) -> tuple[bytes, int]:
    """``records`` to the card in TLS RECORDS APDUs of ``BLOCK`` bytes (P2: first, last), each
    answer fetched whole with GET RESPONSE; (what the card answered, the last status word).
    Stops at the first block whose status word is not in ``ok``."""
    blocks = [records[i : i + BLOCK] for i in range(0, len(records), BLOCK)] or [b""]
    answer, sw = b"", 0x9000
    for i, block in enumerate(blocks):
        p2 = (0x01 if i == 0 else 0) | (0x02 if i == len(blocks) - 1 else 0)
        data, sw = send(bytes([0x00, 0xD8, 0x00, p2, len(block)]) + block + b"\x00")
        answer += data
        while sw >> 8 == 0x61:
            data, sw = send(bytes([0x00, c.INS_GET_RESPONSE, 0x00, 0x00, sw & 0xFF]))
            answer += data
        if sw not in ok:
            break
    return answer, sw
