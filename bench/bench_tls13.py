"""TLS#2 handshake cost: the card's TLS 1.3 server against OpenSSL, in one process.

The key server's side is Python's ``ssl`` over memory BIOs, the card's side is
``firmware.tls13.Tls13Server``; both run on one core, so "total" is both ends.
"server" is the time spent inside the server's ``receive`` calls only, the part
a card would run. Bytes are TLS record bytes on the wire; APDUs count
draft-urien-tls-se framing (240-byte command blocks, 256-byte answers with GET
RESPONSE). Run from the repository root::

    .venv/bin/python bench/bench_tls13.py [--runs 30]
"""

from __future__ import annotations

import argparse
import math
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric import ec

from elock_common import pki
from firmware.tls13 import ServerState, Tls13Server


@dataclass
class Run:
    total: float
    server: float
    to_card: int
    to_key_server: int
    apdus: int
    retried: bool


def handshake(paths: pki.PkiPaths, card: tuple[object, ec.EllipticCurvePrivateKey],
              p256_only: bool) -> Run:  # fmt: skip
    cert, key = card
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(paths.se_issuer_ca.cert)
    ctx.load_cert_chain(paths.key_server.cert, paths.key_server.key)
    if p256_only:
        ctx.set_ecdh_curve("prime256v1")
    start = time.perf_counter()
    server = Tls13Server(
        certificate_chain=[cert],  # type: ignore[list-item]
        private_key=key,
        client_trust_anchor=pki.load_certificate(paths.key_server_ca.cert),
        now=time.time(),
    )
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(incoming, outgoing)
    in_server = 0.0
    to_card = to_key_server = apdus = 0
    while server.state is not ServerState.CONNECTED:
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        data = outgoing.read()
        if not data:
            continue
        t = time.perf_counter()
        server.receive(data)
        answer = server.data_to_send()
        in_server += time.perf_counter() - t
        to_card += len(data)
        to_key_server += len(answer)
        apdus += math.ceil(len(data) / 240) + max(0, math.ceil(len(answer) / 256) - 1)
        incoming.write(answer)
        if server.state is ServerState.FAILED:
            raise RuntimeError("handshake failed")
    total = time.perf_counter() - start
    retried = any(getattr(e, "retried", False) for e in iter(server.next_event, None))
    return Run(total, in_server, to_card, to_key_server, apdus, retried)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = pki.init_pki(Path(tmp))
        issuer = pki.load_certificate(paths.se_issuer_ca.cert)
        issuer_key = pki.load_private_key(paths.se_issuer_ca.key)
        card_key = ec.generate_private_key(ec.SECP256R1())
        card_cert = pki.issue_se_certificate(
            issuer, issuer_key, card_key.public_key(), "bench-card", time.time()
        )
        print(f"OpenSSL (client): {ssl.OPENSSL_VERSION}; {args.runs} handshakes each\n")
        print("| path | median total ms | median server ms | bytes to card | "
              "bytes to key server | APDUs (240/256) |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for label, p256_only in (("HelloRetryRequest (X25519 offered first)", False),
                                 ("direct (client offers P-256 only)", True)):  # fmt: skip
            handshake(paths, (card_cert, card_key), p256_only)  # warm-up
            runs = [handshake(paths, (card_cert, card_key), p256_only) for _ in range(args.runs)]
            assert all(r.retried is not p256_only for r in runs)
            print(
                f"| {label} | {statistics.median(r.total for r in runs) * 1000:.2f} "
                f"| {statistics.median(r.server for r in runs) * 1000:.2f} "
                f"| {runs[0].to_card} | {runs[0].to_key_server} | {runs[0].apdus} |"
            )


if __name__ == "__main__":
    main()
