"""The key server's push through a real RACS server into the real applet, in process."""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from elock_common import pki
from elock_common.container import KeyContainer
from elock_push import (
    Delete,
    Install,
    Outcome,
    TlsSessionError,
    TransportError,
    UntrustedCardError,
)
from elock_testkit.push_harness import (
    CutProxy,
    Racs,
    is_command_record,
    make_card,
    make_card_with,
    start_racs,
)
from firmware.applet import Applet
from firmware.virtual import host
from racs.style import ServerStyle
from tests.push.conftest import SEID

PSK = "Zm9vYmFyLXNlY3JldC1wc2sta2V5LTAx"  # 32 characters, as the key format's PSKs
URI = "coaps://127.0.0.1:5684/lock"


def door(container_id: int = 1, identity: str = "front-door-key-7", psk: str = PSK) -> KeyContainer:
    return KeyContainer(container_id, "Front door", URI, identity.encode(), psk.encode())


def listed(applet: Applet) -> list[KeyContainer]:
    host.select(applet.process)
    return host.list_containers(applet.process)


async def test_install_is_listed_idempotent_and_deleted(racs: Racs) -> None:
    pusher, applet = racs.pusher(), racs.cards[SEID].applet
    report = await pusher.push(SEID, [Install(door())], list_after=True)
    assert [r.outcome for r in report.results] == [Outcome.INSTALLED]
    assert [k.identity for k in report.containers] == [b"front-door-key-7"]
    assert [(k.container_id, k.label) for k in listed(applet)] == [(1, "Front door")]
    assert applet.keyring.get(1).psk == PSK.encode()  # the real keyring, PSK included
    again = await pusher.install(SEID, door())
    assert again.outcome is Outcome.ALREADY_PRESENT
    assert len(listed(applet)) == 1
    clash = await pusher.install(SEID, door(identity="another-key"))
    assert clash.outcome is Outcome.FAILED and "CONFLICT" in clash.detail
    assert (await pusher.replace(SEID, door(identity="another-key"))).outcome is Outcome.REPLACED
    assert (await pusher.delete(SEID, 1)).outcome is Outcome.DELETED
    assert listed(applet) == []
    assert (await pusher.delete(SEID, 1)).outcome is Outcome.NOT_FOUND
    assert await pusher.list_containers(SEID) == []


async def test_racs_log_shows_only_ciphertext(racs: Racs, tmp_path: Path) -> None:
    container = door()
    report = await racs.pusher().push(SEID, [Install(container), Delete(3)])
    assert [r.outcome for r in report.results] == [Outcome.INSTALLED, Outcome.NOT_FOUND]
    lines = (tmp_path / "apdus.log").read_text().splitlines()
    apdus = [bytes.fromhex(part) for line in lines for part in line.split()[-3::2]]
    assert sum(a[:2] == b"\x00\xd8" for a in apdus) >= 5  # TLS#2 went through this server
    secrets = [container.psk, container.label.encode(), container.identity, container.uri.encode()]
    for apdu in apdus:
        for secret in secrets:
            assert secret not in apdu
    text = "\n".join(lines).upper()
    for secret in secrets:
        assert secret.hex().upper() not in text
        assert secret.decode().upper() not in text
    # Sanity: the same check does see a container that the sealed path would carry in clear.
    assert container.psk.hex().upper() in container.to_tlv().hex().upper()


def flip_a_record_byte(apdu: bytes, applet: Applet) -> bytes:
    if not is_command_record(apdu, applet):
        return apdu
    i = len(apdu) - 4  # inside the record's ciphertext or tag (APDU ends with Le)
    return apdu[:i] + bytes([apdu[i] ^ 0x01]) + apdu[i + 1 :]


async def test_a_record_changed_in_flight_aborts_and_changes_nothing(racs: Racs) -> None:
    pusher, tapped = racs.pusher(), racs.cards[SEID]
    assert (await pusher.install(SEID, door(1))).outcome is Outcome.INSTALLED
    tapped.before = flip_a_record_byte
    with pytest.raises(TlsSessionError) as caught:
        await pusher.push(SEID, [Install(door(2, "second-key")), Delete(1)])
    assert "BAD_RECORD_MAC" in caught.value.reason  # the card refused the changed record
    assert tapped.applet.tls is not None and tapped.applet.tls.session_sw == 0x9002
    assert [k.container_id for k in listed(tapped.applet)] == [1]  # neither command ran
    tapped.before = None
    result = await pusher.install(SEID, door(2, "second-key"))
    assert result.outcome is Outcome.INSTALLED
    assert [k.container_id for k in listed(tapped.applet)] == [1, 2]


@pytest.mark.parametrize("when", ["before the card", "after the card"])
async def test_a_cut_racs_connection_leaves_all_or_nothing_and_retry_installs_once(
    racs: Racs, when: str
) -> None:
    proxy = CutProxy(racs.port)
    await proxy.start()
    tapped = racs.cards[SEID]
    cut_before = when == "before the card"

    def before(apdu: bytes, applet: Applet) -> bytes:
        if cut_before and is_command_record(apdu, applet):
            proxy.cut()
            raise ConnectionResetError("the link to RACS is gone")  # the card never sees it
        return apdu

    def after(apdu: bytes, response: bytes) -> None:
        if not cut_before and apdu[:2] == b"\x00\xd8" and tapped.applet.keyring.all():
            proxy.cut()  # the card has written the container; its answer is lost

    tapped.before, tapped.after = before, after
    pusher = racs.pusher(proxy.port)
    with pytest.raises(TransportError):
        await pusher.push(SEID, [Install(door())])
    tapped.before = tapped.after = None
    present = [k.container_id for k in tapped.applet.keyring.all()]
    assert present == ([] if cut_before else [1])  # absent or complete, never half
    await racs.released(SEID)
    retry = await pusher.install(SEID, door())
    expected = Outcome.INSTALLED if cut_before else Outcome.ALREADY_PRESENT
    assert retry.outcome is expected
    assert [(k.container_id, k.identity) for k in listed(tapped.applet)] == [
        (1, b"front-door-key-7")
    ]
    await proxy.close()


def _self_signed(key: ec.EllipticCurvePrivateKey, seid: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, seid)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(pki.seid_uri(seid))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip


def _rogue_issuer(key: ec.EllipticCurvePrivateKey, seid: str) -> x509.Certificate:
    rogue_cert, rogue_key = pki.make_ca("eLock secure-element issuer CA", now=time.time())
    return pki.issue_se_certificate(rogue_cert, rogue_key, key.public_key(), seid, time.time())


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("self-signed", pki.SelfSignedError),
        ("another SEID", pki.WrongSeidError),
        ("another issuer", pki.WrongIssuerError),
    ],
)
async def test_an_untrusted_card_gets_nothing(
    push_pki: pki.PkiPaths, kind: str, error: type[pki.SeCertificateError], style: ServerStyle
) -> None:
    if kind == "another SEID":
        card = make_card(push_pki, SEID, cert_seid="card-0002")
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        make = _self_signed if kind == "self-signed" else _rogue_issuer
        card = make_card_with(push_pki, key, make(key, SEID))
    racs = await start_racs(push_pki, {SEID: card}, style=style)
    try:
        with pytest.raises(UntrustedCardError) as caught:
            await racs.pusher().push(SEID, [Install(door())])
        assert isinstance(caught.value.cause, error)
        result = await racs.pusher().install(SEID, door())
        assert result.outcome is Outcome.FAILED and isinstance(result.error, UntrustedCardError)
        seen = racs.cards[SEID].seen
        assert not any(apdu[:2] == b"\x00\xd8" for apdu in seen)  # not even a ClientHello
        assert card.keyring.all() == []
    finally:
        await racs.close()


async def test_an_unknown_seid_is_a_transport_refusal(racs: Racs) -> None:
    result = await racs.pusher().install("card-9999", door())
    assert result.outcome is Outcome.FAILED and isinstance(result.error, TransportError)


async def test_ten_cards_in_parallel(push_pki: pki.PkiPaths) -> None:
    seids = [f"card-{n:04d}" for n in range(10)]
    racs = await start_racs(push_pki, {s: make_card(push_pki, s) for s in seids})
    try:
        pusher = racs.pusher()
        results = await asyncio.gather(*(pusher.install(s, door()) for s in seids))
        assert [r.outcome for r in results] == [Outcome.INSTALLED] * 10
    finally:
        await racs.close()
