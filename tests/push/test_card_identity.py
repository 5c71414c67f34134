"""The card's identity: made at personalization, readable, and closing the sealed path."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from elock_common import card_protocol as c
from elock_common import pki
from elock_common.container import KeyContainer
from elock_testkit.cardproc import ELOCK_SE, elock_se, env, personalize_with_identity
from elock_testkit.push_harness import make_card
from firmware import identity
from firmware.applet import Applet
from firmware.personalization import CELL_TRANSPORT_KEY
from firmware.store import Eeprom, Store
from firmware.virtual import cardfile, host

SELECT = bytes([0x00, 0xA4, 0x04, 0x00, len(c.AID)]) + c.AID
KEY = KeyContainer(0, "Door", "coaps://127.0.0.1/lock", b"id-1", b"p" * 32)


def test_the_certificate_is_readable_and_names_the_seid(push_pki: pki.PkiPaths) -> None:
    applet = make_card(push_pki, "card-0042")
    host.select(applet.process)
    cert = x509.load_der_x509_certificate(host.card_certificate(applet.process))
    issuer = pki.load_certificate(push_pki.se_issuer_ca.cert)
    pki.verify_se_certificate(cert, issuer, "card-0042", time.time())
    assert applet.process(bytes.fromhex("00CA7F2200"))[-2:] == b"\x6a\x86"


def test_a_card_without_identity_has_no_certificate_and_no_tls() -> None:
    applet = Applet(Store(Eeprom()))
    applet.process(SELECT)
    assert applet.process(bytes.fromhex("00CA7F2100")) == b"\x6a\x88"
    assert applet.process(bytes.fromhex("00D8000000")) == b"\x6d\x00"


def test_the_sealed_container_path_closes_with_a_trust_anchor(push_pki: pki.PkiPaths) -> None:
    transport_key = bytes(range(32))
    applet = make_card(push_pki, "card-0043")
    with applet.store.transaction() as tx:
        tx.put(CELL_TRANSPORT_KEY, transport_key)
    host.select(applet.process)
    with pytest.raises(host.CardError) as caught:
        host.install(applet.process, transport_key, KEY)
    assert caught.value.sw == 0x6985
    with pytest.raises(host.CardError) as caught:
        host.delete(applet.process, transport_key, 1)
    assert caught.value.sw == 0x6985
    assert applet.keyring.all() == []
    # Without an anchor the sealed path still works (tests and the demo use it).
    store = Store(Eeprom())
    with store.transaction() as tx:
        tx.put(CELL_TRANSPORT_KEY, transport_key)
    plain = Applet(store)
    host.select(plain.process)
    assert host.install(plain.process, transport_key, KEY) == 1


def test_the_private_key_is_made_once_and_certificates_must_match(
    push_pki: pki.PkiPaths,
) -> None:
    store = Store(Eeprom())
    public_key = identity.generate_key(store)
    with pytest.raises(identity.IdentityError):
        identity.generate_key(store)
    issuer = pki.load_certificate(push_pki.se_issuer_ca.cert)
    issuer_key = pki.load_private_key(push_pki.se_issuer_ca.key)
    anchor = pki.load_certificate(push_pki.key_server_ca.cert)
    cert = pki.issue_se_certificate(issuer, issuer_key, public_key, "card-1", time.time())
    wrong = pki.issue_se_certificate(
        issuer, issuer_key, pki.load_certificate(push_pki.key_server.cert).public_key(),  # type: ignore[arg-type]
        "card-1", time.time(),
    )  # fmt: skip
    with pytest.raises(identity.IdentityError):
        identity.install_certificate(store, wrong, anchor)
    identity.install_certificate(store, cert, anchor)
    assert "key hidden" in repr(identity.CardIdentity.load(store))


@pytest.mark.slow
@pytest.mark.peer  # elock-se as a process, as an issuer runs it
def test_elock_se_personalize_with_an_identity(push_pki: pki.PkiPaths, tmp_path: Path) -> None:
    card = tmp_path / "card.json"
    personalized = personalize_with_identity(card, push_pki, "card-0100")
    assert "SEID card-0100" in personalized
    shown = elock_se("certificate", "--card", str(card))
    cert = x509.load_pem_x509_certificate(shown.encode())
    issuer = pki.load_certificate(push_pki.se_issuer_ca.cert)
    pki.verify_se_certificate(cert, issuer, "card-0100", time.time())
    key_cell = cardfile.load(card).read(identity.CELL_KEY)
    assert key_cell is not None and key_cell.hex() not in personalized + shown
    half = subprocess.run(
        [*ELOCK_SE, "personalize", "--card", str(tmp_path / "b.json"), "--seid", "x"],
        capture_output=True, text=True, env=env(), timeout=30,
    )  # fmt: skip
    assert half.returncode == 1 and "go together" in half.stderr
