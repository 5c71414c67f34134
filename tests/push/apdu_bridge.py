"""A TCP bridge that speaks to the real ``Applet`` ONLY through its APDUs.

Unlike ``tests/firmware/tcp_bridge.py`` (which drives ``Tls13Server`` directly),
every TLS byte here goes in TLS RECORDS APDUs (``00 D8``, 240-byte blocks) and
comes back through the dispatcher's 61xx / GET RESPONSE chaining, as a reader
or RACS would carry it; so ``openssl s_client`` on the socket shakes hands with
the applet's own endpoint.
"""

from __future__ import annotations

import socket
import threading

from elock_common import card_protocol as c
from elock_push.card_link import RESET_TLS, tls_record_apdus
from firmware.applet import Applet

SELECT = bytes([0x00, 0xA4, 0x04, 0x00, len(c.AID)]) + c.AID


class ApduBridge:
    def __init__(self, applet: Applet) -> None:
        self.applet = applet
        self.status_words: list[int] = []  # the last block's status of each flight
        self.apdus = 0
        self.error: BaseException | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(30)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ApduBridge:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(timeout=30)

    def _transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus += 1
        response = self.applet.process(apdu)
        data = bytearray(response[:-2])
        while response[-2] == 0x61:
            self.apdus += 1
            response = self.applet.process(bytes([0x00, 0xC0, 0x00, 0x00, response[-1]]))
            data += response[:-2]
        return bytes(data), int.from_bytes(response[-2:], "big")

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:
            self.error = exc
            return
        with conn:
            conn.settimeout(30)
            try:
                for apdu in (SELECT, RESET_TLS):
                    assert self._transmit(apdu)[1] == 0x9000
                while data := conn.recv(65536):
                    answer, sw = b"", 0x9000
                    for apdu in tls_record_apdus(data):
                        answer, sw = self._transmit(apdu)
                    self.status_words.append(sw)
                    if answer:
                        conn.sendall(answer)
                    if sw == 0x9002:
                        break
            except OSError as exc:
                self.error = exc
