"""Fuzz targets: every parser that takes bytes from outside, one function each.

A target takes the fuzzer's bytes and raises only when it found a bug: an
exception the parser's callers do not expect, or the parser's own "this was a
bug" signal (the applet's 6F00, the TLS server's internal_error alert). The
refusals a parser is documented to raise are expected and swallowed.

Deep targets start from a real handshake state: the first byte picks how far
the test-side peer of ``tests/models`` has driven the handshake, and whether
the rest is sent as it is or sealed under the session's keys, so the fuzzer
gets past record authentication into the decrypted message parsers.

Run by ``tests/fuzz/run.py`` under atheris (coverage-guided) and by
``test_fuzz.py`` over the corpus in ``tests/fuzz/corpus/<target>/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache

from elock_common import IdentityFormatError, KeyIdentity, tlv
from elock_common.container import KeyContainer, parse_list
from elock_common.errors import FormatError
from elock_common.provisioning_wire import MessageSplitter, ProvisioningError, decode_request
from elock_testkit.tls_card import SELECT, applet_with_tls
from firmware.coap_message import CoapFormatError, decode_message
from firmware.dtls.errors import PeerError
from firmware.dtls.fragments import pull_fragments
from firmware.dtls.messages import (
    pull_hello_verify_request,
    pull_server_hello,
    pull_server_key_exchange,
)
from firmware.dtls.records import CT_HANDSHAKE, RecordError, parse_records
from firmware.tls13 import AlertDescription, ConnectionClosed, Tls13Server
from firmware.tls13 import auth_messages as am
from firmware.tls13.alerts import TlsAlert
from firmware.tls13.messages import pull_client_hello
from firmware.tls13.records import ContentType
from racs.errors import RacsError, RemoteProtocolError
from racs.protocol import LineReader, parse_command, parse_response_line

Target = Callable[[bytes], None]


class FoundBugError(AssertionError):
    """The input made a parser misbehave: the fuzzer keeps it as a crash."""


# -- the card: APDU dispatch, TLV, containers -------------------------------------------


@cache
def _tls_credentials():  # type: ignore[no-untyped-def]
    from tests.models.tls13_sul import Credentials

    return Credentials.make()


def apdu(data: bytes) -> None:
    """Up to 8 APDUs (one length byte each) into a selected applet with its TLS endpoint."""
    cred = _tls_credentials()
    applet, _ = applet_with_tls(cred.card_cert, cred.card_key, cred.anchor)
    applet.process(SELECT)
    pos = 0
    for _ in range(8):
        if pos >= len(data):
            break
        n = data[pos]
        command = data[pos + 1 : pos + 1 + n]
        pos += 1 + n
        answer = applet.process(command)
        if len(answer) < 2:
            raise FoundBugError("a response APDU without a status word")
        if answer[-2:] == b"\x6f\x00":
            raise FoundBugError(f"6F00 (an exception inside the applet) for {command.hex()}")


def tlv_and_containers(data: bytes) -> None:
    try:
        tlv.decode(data)
    except FormatError:
        pass
    for parse in (KeyContainer.from_tlv, KeyContainer.from_public_tlv, parse_list):
        try:
            parse(data)  # type: ignore[operator]
        except FormatError:
            pass


def provisioning_request(data: bytes) -> None:
    """What the card reads inside TLS#2 (``firmware/provisioning_channel.py``)."""
    try:
        messages = MessageSplitter().feed(data)
    except ProvisioningError:
        return
    for tag, value in messages:
        if value is None:
            continue
        try:
            decode_request(tag, value)
        except ProvisioningError:
            pass


# -- the card: its DTLS client and the CoAP it reads ------------------------------------


def dtls_records(data: bytes) -> None:
    try:
        records = parse_records(data, 2**14 + 16)
    except RecordError:
        return
    for record in records:
        try:
            for fragment in pull_fragments(record.fragment):
                for pull in (
                    pull_hello_verify_request,
                    pull_server_hello,
                    pull_server_key_exchange,
                ):
                    try:
                        pull(fragment.data)
                    except PeerError:
                        pass
        except PeerError:
            pass


_DTLS_PREFIXES = [
    [],
    ["HVR"],
    ["SH"],
    ["SH", "SHD"],
    ["SH", "SHD", "CCS"],
    ["SH", "SHD", "CCS", "FIN"],
]


def dtls_client(data: bytes) -> None:
    """A datagram into the card's DTLS client at a chosen state; nothing may escape."""
    from tests.models.dtls_client_sul import DtlsClientSul

    if not data:
        return
    sul = DtlsClientSul()
    sul.pre()
    for letter in _DTLS_PREFIXES[data[0] % len(_DTLS_PREFIXES)]:
        sul.step(letter)
    client, writer = sul.client, sul.mapper.writer
    assert client is not None
    payload = data[1:]
    if data[0] & 0x80:  # seal it as a handshake record of our current epoch
        payload = writer.seal([(CT_HANDSHAKE, writer.epoch, payload)])
    client.receive_datagram(payload, 0.0)
    client.datagrams_to_send(0.0)


def coap_message(data: bytes) -> None:
    """The lock's CoAP answer, as the card's CoAP client reads it."""
    try:
        decode_message(data)
    except CoapFormatError:
        pass


# -- the card: TLS 1.3 ------------------------------------------------------------------


def tls13_messages(data: bytes) -> None:
    for pull in (
        pull_client_hello,
        am.pull_certificate,
        am.pull_certificate_verify,
        am.pull_finished,
        am.pull_key_update,
    ):
        try:
            pull(data)  # type: ignore[operator]
        except TlsAlert:
            pass


_TLS_PREFIXES = [[], ["CH"], ["CH", "CERT"], ["CH", "CERT", "CV"], ["CH", "CERT", "CV", "FIN"]]


def tls13_server(data: bytes) -> None:
    """Bytes into the card's TLS server at a chosen state; internal_error means a bug."""
    from tests.models.tls13_sul import ClientMapper

    if not data:
        return
    cred = _tls_credentials()
    server = Tls13Server(
        certificate_chain=[cred.card_cert],
        private_key=cred.card_key,
        client_trust_anchor=cred.anchor,
        now=time.time(),
    )
    mapper = ClientMapper(cred)
    for letter in _TLS_PREFIXES[data[0] % len(_TLS_PREFIXES)]:
        server.receive(mapper.concrete(letter))
        mapper.observe(server.data_to_send())
    payload = data[1:]
    if data[0] & 0x80 and mapper.write is not None:
        payload = mapper.write.seal(ContentType.HANDSHAKE, payload)
    server.receive(payload)
    server.data_to_send()
    while (event := server.next_event()) is not None:
        if isinstance(event, ConnectionClosed) and event.alert is AlertDescription.INTERNAL_ERROR:
            raise FoundBugError(f"internal_error: {event.reason}")


# -- RACS, the key identity, the lock's payloads, the key server's side -----------------


def racs_line(data: bytes) -> None:
    reader = LineReader(512)
    try:
        reader.feed(data)
        while (line := reader.next_line()) is not None:
            try:
                parse_command(line)
            except RacsError:
                pass
            try:
                parse_response_line(line.decode("latin-1"))
            except RemoteProtocolError:  # documented: "not a RACS response line"
                pass
    except RacsError:
        pass


def key_identity(data: bytes) -> None:
    try:
        claims = KeyIdentity.decode(data)
    except IdentityFormatError:
        return
    if KeyIdentity.decode(claims.encode()) != claims:
        raise FoundBugError("an identity does not survive encode(decode())")


def lock_payloads(data: bytes) -> None:
    """What the lock parses before a key is known: revocation pushes and raw datagrams."""
    from lock_server.dtls_transport import _Datagram
    from lock_server.resources import parse_revocations

    try:
        parse_revocations(data)
    except ValueError:
        pass
    _Datagram.parse(data)


def keyserver_answers(data: bytes) -> None:
    """What the key server reads from a card: its answers inside TLS#2."""
    from elock_push.errors import TlsSessionError
    from elock_push.push import read_answers

    try:
        read_answers(data, list_after=True)
    except TlsSessionError:
        pass


def sync_messages(data: bytes) -> None:
    """What the two dial-in channels read from the other end: a lock's (or the key server's)
    lock-sync frames, and a card host's (or the key server's) card-sync frames."""
    from elock_common import card_sync, lock_sync

    for decode, error in (
        (lock_sync.decode, lock_sync.SyncFormatError),
        (card_sync.decode_host_message, card_sync.SyncFormatError),
        (card_sync.decode_server_message, card_sync.SyncFormatError),
    ):
        try:
            decode(data)
        except error:
            pass


TARGETS: dict[str, Target] = {
    "apdu": apdu,
    "tlv_and_containers": tlv_and_containers,
    "provisioning_request": provisioning_request,
    "dtls_records": dtls_records,
    "dtls_client": dtls_client,
    "coap_message": coap_message,
    "tls13_messages": tls13_messages,
    "tls13_server": tls13_server,
    "racs_line": racs_line,
    "key_identity": key_identity,
    "lock_payloads": lock_payloads,
    "keyserver_answers": keyserver_answers,
    "sync_messages": sync_messages,
}
