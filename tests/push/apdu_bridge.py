"""A TCP bridge that speaks to the real ``Applet`` ONLY through its APDUs.

Unlike ``tests/firmware/tcp_bridge.py`` (which drives ``Tls13Server`` directly),
every TLS byte here goes in TLS RECORDS APDUs (``00 D8``, 240-byte blocks) and
comes back through the dispatcher's 61xx / GET RESPONSE chaining, as a reader
or RACS would carry it; so ``openssl s_client`` on the socket shakes hands with
the applet's own endpoint.
"""

from __future__ import annotations

import socket

from elock_common import card_protocol as c
from elock_common.apdu import exchange
from elock_push.card_link import RESET_TLS, tls_record_apdus
from elock_testkit.bridge import OneClientBridge
from firmware.applet import Applet

SELECT = bytes([0x00, 0xA4, 0x04, 0x00, len(c.AID)]) + c.AID


class ApduBridge(OneClientBridge):
    def __init__(self, applet: Applet) -> None:
        super().__init__()
        self.applet = applet
        self.status_words: list[int] = []  # the last block's status of each flight
        self.apdus = 0

    def _process(self, apdu: bytes) -> bytes:
        self.apdus += 1
        return self.applet.process(apdu)

    def serve(self, conn: socket.socket) -> None:
        for apdu in (SELECT, RESET_TLS):
            assert exchange(self._process, apdu)[1] == 0x9000
        while data := conn.recv(65536):
            answer, sw = b"", 0x9000
            for apdu in tls_record_apdus(data):
                answer, sw = exchange(self._process, apdu)
            self.status_words.append(sw)
            if answer:
                conn.sendall(answer)
            if sw == 0x9002:
                break
