"""SUL 1: the card's DTLS 1.2 PSK client (``firmware.dtls.client``), through its sans-I/O API.

The learner plays the server (DTLS-Fuzzer's client mode). Each abstract input
is one server flight the mapper builds for real (``ServerHelloMapper``), sealed
with keys it derives from the PSK it shares with the client; the client's
datagrams and events come back as abstract tokens. ``SEND_APP`` is the host
asking the client to send application data. A fresh client per query, so no
state leaks between queries; time stands still (``now`` = 0), so only a
repeated server flight, never the timer, makes the client resend.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from aalpy.base import SUL

from firmware.dtls.client import (
    ApplicationDataReceived,
    ConnectionTerminated,
    DtlsClient,
    DtlsUsageError,
    HandshakeCompleted,
)
from firmware.dtls.fragments import pull_fragments, push_handshake
from firmware.dtls.messages import (
    EXT_EXTENDED_MASTER_SECRET,
    EXT_RENEGOTIATION_INFO,
    FINISHED,
    HELLO_VERIFY_REQUEST,
    SERVER_HELLO,
    SERVER_HELLO_DONE,
    SERVER_KEY_EXCHANGE,
    vector,
)
from firmware.dtls.records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    DTLS_1_0,
    DTLS_1_2,
    TLS_PSK_WITH_AES_128_CCM_8,
)
from tests.models.dtls_wire import Session, Writer, join, read_datagram, token
from tests.models.properties import CONNECTED, Spec

IDENTITY = b"model-learning-key"
PSK = b"0123456789abcdef0123456789abcdef"
COOKIE = b"learned-cookie-0"

ALPHABET = ["HVR", "SH", "SKE", "SHD", "CCS", "FIN", "APP", "ALERT", "REPEAT", "SEND_APP"]
SMALL_ALPHABET = ["HVR", "SH", "SHD", "CCS", "FIN", "APP", "ALERT"]
SPEC = Spec(
    happy_path=("SH", "SHD", "CCS", "FIN"),
    alert_inputs=frozenset({"ALERT"}),
    repeat_input="REPEAT",
    quiet_outputs=frozenset({"NONE", "REFUSED"}),
)

MAX_RESENDS = 2  # the card's default is 6: each resend left is one more state in a row
ClientFactory = Callable[..., DtlsClient]


class ServerMapper:
    """The server end, built message by message in whatever order the learner asks."""

    def __init__(self) -> None:
        self.session = Session(PSK)
        self.writer = Writer()
        self.message_seq = 0

    def handshake(self, msg_type: int, body: bytes) -> bytes:
        message = push_handshake(msg_type, self.message_seq, body)
        self.message_seq += 1
        if msg_type != HELLO_VERIFY_REQUEST:  # RFC 6347 4.2.1: HVR is not hashed
            self.session.add(message)
        return self.writer.send([(CT_HANDSHAKE, message)])

    def concrete(self, letter: str) -> bytes:
        s = self.session
        if letter == "HVR":
            return self.handshake(
                HELLO_VERIFY_REQUEST, struct.pack("!H", DTLS_1_0) + vector(1, COOKIE)
            )
        if letter == "SH":
            s.server_random = bytes(range(32))
            extensions = struct.pack("!HH", EXT_EXTENDED_MASTER_SECRET, 0) + struct.pack(
                "!HHB", EXT_RENEGOTIATION_INFO, 1, 0
            )
            body = (
                struct.pack("!H", DTLS_1_2)
                + s.server_random
                + vector(1, b"")
                + struct.pack("!HB", TLS_PSK_WITH_AES_128_CCM_8, 0)
                + vector(2, extensions)
            )
            return self.handshake(SERVER_HELLO, body)
        if letter == "SKE":
            return self.handshake(SERVER_KEY_EXCHANGE, vector(2, b""))
        if letter == "SHD":
            return self.handshake(SERVER_HELLO_DONE, b"")
        if letter == "CCS":
            data = self.writer.send([(CT_CHANGE_CIPHER_SPEC, b"\x01")])
            self.writer.change_cipher_spec(s.protection(client=False))
            return data
        if letter == "FIN":
            return self.handshake(FINISHED, s.verify_data(b"server finished"))
        if letter == "APP":
            return self.writer.send([(CT_APPLICATION_DATA, b"2.04 opened")])
        if letter == "ALERT":
            return self.writer.send([(CT_ALERT, b"\x02\x28")])  # fatal handshake_failure
        if letter == "REPEAT":
            return self.writer.repeat() if self.writer.last_flight else b""
        raise ValueError(letter)

    def observe(self, datagram: bytes) -> list[str]:
        """Tokens for what the client sent; learn its random, CKE and Finished on the way."""
        s = self.session
        out: list[str] = []
        for seen in read_datagram(datagram, lambda epoch: s.protection(client=True)):
            out += token(seen)
            if seen.record.content_type != CT_HANDSHAKE or seen.payload is None:
                continue
            for fragment in pull_fragments(seen.payload):
                whole = push_handshake(fragment.msg_type, fragment.message_seq, fragment.data)
                if fragment.msg_type == 1:  # ClientHello: the hash starts again from it
                    s.client_random = fragment.data[2:34]
                    if whole not in s.transcript:
                        s.restart(whole)
                elif fragment.msg_type == 16 and whole not in s.transcript:
                    s.add(whole)
                    s.derive()
                elif fragment.msg_type == FINISHED:
                    s.add(whole)
        return out


class DtlsClientSul(SUL):  # type: ignore[misc]
    def __init__(self, factory: ClientFactory = DtlsClient) -> None:
        super().__init__()
        self.factory = factory
        self.client: DtlsClient | None = None
        self.mapper = ServerMapper()

    def pre(self) -> None:
        self.client = self.factory(IDENTITY, PSK, max_retransmissions=MAX_RESENDS)
        self.mapper = ServerMapper()
        self.client.connect(0.0)
        for datagram in self.client.datagrams_to_send(0.0):
            self.mapper.observe(datagram)

    def post(self) -> None:
        self.client = None

    def step(self, letter: str | None) -> str:
        client = self.client
        assert client is not None and letter is not None
        out: list[str] = []
        if letter == "SEND_APP":
            try:
                client.send_application_data(b"POST /lock")
            except DtlsUsageError:
                out.append("REFUSED")
        else:
            data = self.mapper.concrete(letter)
            if data:
                client.receive_datagram(data, 0.0)
        for datagram in client.datagrams_to_send(0.0):
            out += self.mapper.observe(datagram)
        while (event := client.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                out.append(CONNECTED)
            elif isinstance(event, ApplicationDataReceived):
                out.append("APP_RECEIVED")
            elif isinstance(event, ConnectionTerminated):
                out.append("CLOSED")
        return join(out)


__all__ = ["ALPHABET", "SMALL_ALPHABET", "SPEC", "DtlsClientSul"]
