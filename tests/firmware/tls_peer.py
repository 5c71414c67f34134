"""The key server's side of TLS#2 in tests: Python's ``ssl`` (OpenSSL) over memory BIOs."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from firmware.tls13 import ServerState, Tls13Server, TlsEvent
from tests.firmware.tls_fixtures import CardPki


def client_context(
    card_pki: CardPki,
    *,
    certificate: tuple[Path, Path] | bool = True,
    p256_only: bool = False,
    keylog: Path | None = None,
) -> ssl.SSLContext:
    """TLS 1.3 only, the SE issuer CA as trust anchor, the key server's certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # the card is named by SEID: checked by verify_se_certificate
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(card_pki.paths.se_issuer_ca.cert)
    if certificate is True:
        ctx.load_cert_chain(card_pki.paths.key_server.cert, card_pki.paths.key_server.key)
    elif isinstance(certificate, tuple):
        ctx.load_cert_chain(*certificate)
    if p256_only:
        ctx.set_ecdh_curve("prime256v1")
    if keylog is not None:
        ctx.keylog_filename = str(keylog)
    return ctx


Mutator = Callable[[bytes], bytes]


class SslClient:
    """An OpenSSL client whose bytes go to a ``Tls13Server`` in the same process."""

    def __init__(self, ctx: ssl.SSLContext, server: Tls13Server) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=False)
        self.server = server
        self.events: list[TlsEvent] = []
        self.bytes_to_server = 0
        self.bytes_to_client = 0
        self.client_error: ssl.SSLError | None = None

    def flush(self, mutate: Mutator | None = None, chunk: int | None = None) -> None:
        """Carry what the client wrote to the server, and the server's answer back."""
        data = self.outgoing.read()
        if mutate is not None and data:
            data = mutate(data)
        self.bytes_to_server += len(data)
        if chunk is None:
            self.server.receive(data)
        else:
            for i in range(0, len(data), chunk):
                self.server.receive(data[i : i + chunk])
        answer = self.server.data_to_send()
        self.bytes_to_client += len(answer)
        self.incoming.write(answer)
        while (event := self.server.next_event()) is not None:
            self.events.append(event)

    def handshake(self, *, chunk: int | None = None, max_rounds: int = 10) -> None:
        """Run the handshake to its end; a client-side failure is kept in ``client_error``."""
        for _ in range(max_rounds):
            try:
                self.tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as exc:
                self.client_error = exc
                done = True
            self.flush(chunk=chunk)
            if done or self.server.state in (ServerState.FAILED, ServerState.CLOSED):
                break
        # TLS 1.3: the client is done before the server has checked its certificate.
        self.flush(chunk=chunk)

    def send(self, data: bytes, mutate: Mutator | None = None) -> None:
        self.tls.write(data)
        self.flush(mutate)

    def read_all(self) -> bytes:
        out = bytearray()
        while True:
            try:
                piece = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            if not piece:
                break
            out += piece
        return bytes(out)
