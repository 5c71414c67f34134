"""TLS#2's client: Python's ``ssl`` (OpenSSL) over memory BIOs, no socket.

The bytes it produces go to the card in TLS RECORDS APDUs (``card_link``); the
card's answers come back in. ``ssl`` checks the card's chain against the
secure-element issuer CA (host name checking is off: a card is named by its
SEID, which ``push`` checks on the certificate itself).
"""

from __future__ import annotations

import ssl
from pathlib import Path


def tls2_context(cert: Path, key: Path, se_issuer_ca: Path) -> ssl.SSLContext:
    """TLS 1.3 only, the key server's client certificate, the SE issuer CA as anchor."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # the SEID is checked by verify_se_certificate
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=se_issuer_ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_ecdh_curve("prime256v1")  # the card's only group: saves a HelloRetryRequest
    return ctx


class Tls2Client:
    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self._incoming, self._outgoing, server_side=False)

    def __repr__(self) -> str:
        return "Tls2Client()"

    def handshake_step(self) -> bool:
        """Advance the handshake with what was received; True once it is complete."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def data_to_send(self) -> bytes:
        return self._outgoing.read()

    def receive(self, records: bytes) -> None:
        self._incoming.write(records)

    def send(self, data: bytes) -> None:
        self.tls.write(data)

    def read(self) -> bytes:
        """All the application data received so far ("" at the peer's close_notify)."""
        data = bytearray()
        try:
            while piece := self.tls.read(65536):
                data += piece
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            pass
        return bytes(data)

    def peer_certificate(self) -> bytes | None:
        return self.tls.getpeercert(binary_form=True)

    def close(self) -> bytes:
        """Our close_notify, to send."""
        try:
            self.tls.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        return self.data_to_send()
