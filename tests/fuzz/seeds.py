"""Write the seed corpus of each fuzz target: a few valid inputs, made by our own encoders.

    .venv/bin/python -m tests.fuzz.seeds

Seeds start the fuzzer inside the formats rather than at random bytes; the
corpus a long run grows stays outside the repository (see docs/testing.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from elock_common import LockSecret
from elock_common import card_protocol as c
from elock_common.container import KeyContainer
from elock_common.keys import mint_key
from elock_common.provisioning_wire import (
    Command,
    Response,
    Status,
    encode_delete,
    encode_install,
    encode_list,
)
from firmware.coap_message import Method, encode_request
from tests.models.dtls_client_sul import DtlsClientSul
from tests.models.tls13_sul import ClientMapper, Credentials

CORPUS = Path(__file__).resolve().parent / "corpus"


def _container() -> KeyContainer:
    return KeyContainer(
        container_id=1,
        label="Front door",
        uri="coaps://lock.example:5684/open",
        identity=b"AQABAgMEBQYAAAAA_____wF_AAAFoAA",
        psk=b"0123456789abcdef0123456789abcdef",
        not_before=1_700_000_000,
        not_after=1_900_000_000,
    )


def _apdus(*apdus: bytes) -> bytes:
    return b"".join(bytes([len(a)]) + a for a in apdus)


def _dtls_flights() -> list[bytes]:
    """What the test-side server sends at each step of a handshake with the card."""
    sul = DtlsClientSul()
    sul.pre()
    out = []
    for prefix, letter in enumerate(["SH", "SHD", "CCS", "FIN", "APP"]):
        out.append(bytes([prefix if prefix < 2 else prefix + 1]) + sul.mapper.concrete(letter))
        assert sul.client is not None
        sul.client.receive_datagram(out[-1][1:], 0.0)
        for datagram in sul.client.datagrams_to_send(0.0):
            sul.mapper.observe(datagram)
    return out


def _tls13_flights() -> list[bytes]:
    mapper = ClientMapper(Credentials.make())
    return [bytes([i]) + mapper.concrete(letter) for i, letter in enumerate(["CH"])]


def seeds() -> dict[str, list[bytes]]:
    container = _container()
    _, minted = mint_key(LockSecret(bytes(32)))
    entry = container.public_tlv()
    list_response = Response(Command.LIST.response_tag, Status.DONE, entries=entry)
    hello = _tls13_flights()
    return {
        "apdu": [
            _apdus(bytes([0x80, c.INS_LIST, 0, 0, 0])),
            _apdus(
                bytes.fromhex("00D8000000"),
                bytes([0, 0xD8, 0, 3, len(hello[0]) - 1]) + hello[0][1:],
            ),
        ],
        "tlv_and_containers": [container.to_tlv(), container.public_tlv()],
        "provisioning_request": [
            encode_install(container) + encode_list(),
            encode_delete(1),
        ],
        "dtls_records": [f[1:] for f in _dtls_flights()],
        "dtls_client": _dtls_flights(),
        "coap_message": [
            encode_request(Method.POST, 1, b"\x01", ["lock"]),
            bytes.fromhex("6444000101") + b"\xff" + b"opened",
        ],
        "tls13_messages": [h[6:] for h in hello],
        "tls13_server": hello,
        "racs_line": [
            b"BEGIN\r\nGET-VERSION\r\nLIST\r\nAPDU vcard 00A4040000\r\nEND\r\n",
            b"BEGIN\r\n+002 001 0.2\r\n-406 002 unknown SEID\r\nEND\r\n",
        ],
        "key_identity": [minted.identity],
        "lock_payloads": [
            json.dumps({"version": 3, "revoked": ["0123456789ab"]}).encode(),
            _dtls_flights()[0][1:],
        ],
        "keyserver_answers": [list_response.encode()],
    }


def main() -> None:
    for target, inputs in seeds().items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{target}: {len(inputs)} seeds")


if __name__ == "__main__":
    main()
