"""The TLS endpoint tests' PKI: made once per test session by ``elock_common.pki``.

A test module takes it with ``from tests.firmware.tls_fixtures import card_pki``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from elock_common import pki
from firmware.tls13 import Tls13Server

SEID = "card-0001"


@dataclass(frozen=True)
class CardPki:
    paths: pki.PkiPaths
    card_key: ec.EllipticCurvePrivateKey
    card_cert: x509.Certificate
    key_server_ca: x509.Certificate
    se_issuer_ca: x509.Certificate
    directory: Path

    def server(
        self,
        *,
        now: float | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        max_record: int = 2**14,
        anchor: x509.Certificate | None = None,
    ) -> Tls13Server:
        return Tls13Server(
            certificate_chain=[self.card_cert],
            private_key=self.card_key,
            client_trust_anchor=anchor or self.key_server_ca,
            now=time.time() if now is None else now,
            rng=rng,
            max_record=max_record,
        )

    def write_pem(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="session")
def card_pki(tmp_path_factory: pytest.TempPathFactory) -> CardPki:
    directory = tmp_path_factory.mktemp("pki")
    paths = pki.init_pki(directory)
    issuer_cert = pki.load_certificate(paths.se_issuer_ca.cert)
    issuer_key = pki.load_private_key(paths.se_issuer_ca.key)
    card_key = ec.generate_private_key(ec.SECP256R1())  # stands in for the key made on card
    card_cert = pki.issue_se_certificate(
        issuer_cert, issuer_key, card_key.public_key(), SEID, time.time()
    )
    (directory / "card.pem").write_bytes(card_cert.public_bytes(serialization.Encoding.PEM))
    return CardPki(
        paths=paths,
        card_key=card_key,
        card_cert=card_cert,
        key_server_ca=pki.load_certificate(paths.key_server_ca.cert),
        se_issuer_ca=issuer_cert,
        directory=directory,
    )
