"""The eLock PKI: files, chains, key usages, lifetimes, and the card-certificate check."""

from __future__ import annotations

import datetime
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from elock_common import pki
from tests.conftest import require_tool

SEID = "reader-3:slot@farm.1"
DAY = 86400


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiPaths:
    return pki.init_pki(tmp_path_factory.mktemp("pki"), racs_users=("keyserver", "alice"))


def load(path: Path) -> x509.Certificate:
    return pki.load_certificate(path)


@pytest.fixture(scope="module")
def se_ca(paths: pki.PkiPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return load(paths.se_issuer_ca.cert), pki.load_private_key(paths.se_issuer_ca.key)


def card(se_ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], seid: str = SEID,
         now: float | None = None) -> x509.Certificate:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    return pki.issue_se_certificate(*se_ca, key.public_key(), seid, now or time.time())


def test_files_modes_and_no_silent_overwrite(paths: pki.PkiPaths) -> None:
    pairs = [paths.key_server_ca, paths.key_server, paths.racs_ca, paths.racs_server]
    pairs += [*paths.racs_users.values(), paths.se_issuer_ca]
    for pair in pairs:
        assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
        assert stat.S_IMODE(pair.cert.stat().st_mode) == 0o644
    before = paths.key_server_ca.cert.read_bytes()
    with pytest.raises(pki.PkiExistsError):
        pki.init_pki(paths.directory, racs_users=("keyserver", "alice"))
    assert paths.key_server_ca.cert.read_bytes() == before
    assert isinstance(pki.PkiExistsError("x"), FileExistsError)


def test_overwrite_when_told(tmp_path: Path) -> None:
    first = pki.init_pki(tmp_path)
    old = first.racs_ca.cert.read_bytes()
    first.racs_ca.key.chmod(0o644)
    second = pki.init_pki(tmp_path, overwrite=True)
    assert second.racs_ca.cert.read_bytes() != old
    assert stat.S_IMODE(second.racs_ca.key.stat().st_mode) == 0o600


def test_chains_verify(paths: pki.PkiPaths) -> None:
    when = datetime.datetime.now(datetime.UTC)

    def builder(ca: Path) -> PolicyBuilder:
        return PolicyBuilder().store(Store([load(ca)])).time(when)

    server = builder(paths.racs_ca.cert).build_server_verifier(x509.DNSName("localhost"))
    server.verify(load(paths.racs_server.cert), [])
    for user, pair in paths.racs_users.items():
        verified = builder(paths.racs_ca.cert).build_client_verifier().verify(load(pair.cert), [])
        leaf = verified.chain[0]
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == user
        assert verified.subjects == [x509.UniformResourceIdentifier(pki.racs_user_uri(user))]
    builder(paths.key_server_ca.cert).build_client_verifier().verify(
        load(paths.key_server.cert), []
    )
    with pytest.raises(x509.verification.VerificationError):  # the CAs are not interchangeable
        builder(paths.key_server_ca.cert).build_client_verifier().verify(
            load(paths.racs_users["alice"].cert), []
        )


@pytest.mark.peer
def test_openssl_agrees(paths: pki.PkiPaths, se_ca: tuple[x509.Certificate, object]) -> None:
    openssl = require_tool("openssl")
    cases = [
        (paths.key_server_ca.cert, paths.key_server.cert, "sslclient"),
        (paths.racs_ca.cert, paths.racs_server.cert, "sslserver"),
        (paths.racs_ca.cert, paths.racs_users["alice"].cert, "sslclient"),
    ]
    for ca, cert, purpose in cases:
        result = subprocess.run(
            [openssl, "verify", "-purpose", purpose, "-CAfile", str(ca), str(cert)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and ": OK" in result.stdout, result.stderr
    wrong = subprocess.run(
        [openssl, "verify", "-purpose", "sslserver", "-CAfile", str(paths.key_server_ca.cert),
         str(paths.key_server.cert)],
        capture_output=True,
    )  # fmt: skip
    assert wrong.returncode != 0  # a client certificate is not a server's


def ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def test_profile(
    paths: pki.PkiPaths, se_ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    for ca in (paths.key_server_ca, paths.racs_ca, paths.se_issuer_ca):
        cert = load(ca.cert)
        constraints = ext(cert, x509.BasicConstraints)
        assert constraints.critical and constraints.value == x509.BasicConstraints(True, 0)
        usage = ext(cert, x509.KeyUsage)
        assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
        assert not usage.value.digital_signature
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    se_issuer = load(paths.se_issuer_ca.cert)
    lifetime = se_issuer.not_valid_after_utc - se_issuer.not_valid_before_utc
    assert lifetime.days == pki.SE_ISSUER_CA_DAYS
    roles = {
        paths.key_server.cert: ExtendedKeyUsageOID.CLIENT_AUTH,
        paths.racs_server.cert: ExtendedKeyUsageOID.SERVER_AUTH,
        paths.racs_users["alice"].cert: ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    for path, purpose in roles.items():
        cert = load(path)
        assert ext(cert, x509.BasicConstraints).value.ca is False
        usage = ext(cert, x509.KeyUsage)
        assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
        assert list(ext(cert, x509.ExtendedKeyUsage).value) == [purpose]
        assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= pki.LEAF_DAYS
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        ext(cert, x509.AuthorityKeyIdentifier)
    san = ext(load(paths.racs_server.cert), x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    cert = card(se_ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SEID
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:elock:seid:{SEID}"]
    assert cert.not_valid_after_utc <= se_issuer.not_valid_after_utc


def test_card_certificate_verifies(
    se_ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    pki.verify_se_certificate(card(se_ca), se_ca[0], SEID, time.time())


def test_card_certificate_refusals(
    paths: pki.PkiPaths, se_ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    now = time.time()
    good = card(se_ca)
    with pytest.raises(pki.WrongSeidError):
        pki.verify_se_certificate(good, se_ca[0], "another-card", now)
    other_ca = pki.make_ca("eLock secure-element issuer CA", now=now)  # same name, other key
    with pytest.raises(pki.WrongIssuerError):
        pki.verify_se_certificate(card(other_ca), se_ca[0], SEID, now)
    with pytest.raises(pki.WrongIssuerError):  # a CA that is not the SE issuer
        pki.verify_se_certificate(good, load(paths.racs_ca.cert), SEID, now)
    self_signed, _ = pki.make_ca(SEID, now=now)
    with pytest.raises(pki.SelfSignedError):
        pki.verify_se_certificate(self_signed, se_ca[0], SEID, now)
    with pytest.raises(pki.ExpiredCertificateError):
        pki.verify_se_certificate(good, se_ca[0], SEID, now + (pki.SE_CERT_DAYS + 1) * DAY)
    with pytest.raises(pki.ExpiredCertificateError):
        pki.verify_se_certificate(card(se_ca, now=now + 2 * DAY), se_ca[0], SEID, now)
    client_cert = pki.issue_tls_certificate(
        *se_ca, ec.generate_private_key(ec.SECP256R1()).public_key(), SEID, now=now, client=True
    )
    with pytest.raises(pki.KeyUsageError):
        pki.verify_se_certificate(client_cert, se_ca[0], SEID, now)
    assert all(issubclass(e, pki.SeCertificateError) for e in (
        pki.WrongSeidError, pki.WrongIssuerError, pki.SelfSignedError,
        pki.ExpiredCertificateError, pki.KeyUsageError, pki.UnsupportedKeyError,
    ))  # fmt: skip


def test_unsupported_key(se_ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="P-256"):
        pki.issue_se_certificate(*se_ca, p384, SEID, time.time())
    start = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SEID)]))
        .issuer_name(se_ca[0].subject)
        .public_key(p384)
        .serial_number(1)
        .not_valid_before(start - datetime.timedelta(days=1))
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(se_ca[1], hashes.SHA256())
    )
    with pytest.raises(pki.UnsupportedKeyError):
        pki.verify_se_certificate(cert, se_ca[0], SEID, time.time())


@pytest.mark.parametrize("seid", ["", "a b", "x" * 65, "semi;colon"])
def test_bad_seids_are_refused(
    seid: str, se_ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    with pytest.raises(ValueError, match="SEID"):
        card(se_ca, seid)


def test_the_shared_package_does_not_import_cryptography() -> None:
    code = "import elock_common, sys; assert 'cryptography' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
