"""Writing eLock's PKI to disk: ``init_pki`` (re-exported by ``elock_common.pki``).

Private keys are PKCS#8 PEM without a passphrase, mode 0600 whatever the umask;
certificates PEM, mode 0644. Nothing is written when a file exists already,
unless the caller says ``overwrite``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from elock_common.pki_profile import (
    SE_ISSUER_CA_DAYS,
    Now,
    PkiError,
    as_datetime,
    issue_tls_certificate,
    key_server_uri,
    make_ca,
    racs_user_uri,
)


class PkiExistsError(PkiError, FileExistsError):
    """``init_pki`` would overwrite files and was not told to."""


@dataclass(frozen=True)
class CertAndKey:
    cert: Path
    key: Path


@dataclass(frozen=True)
class PkiPaths:
    directory: Path
    key_server_ca: CertAndKey
    key_server: CertAndKey  # TLS client: TLS#2 into the card (and TLS#1 if RACS trusts it)
    racs_ca: CertAndKey
    racs_server: CertAndKey
    racs_users: dict[str, CertAndKey]
    se_issuer_ca: CertAndKey


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    path.unlink(missing_ok=True)  # a fresh file gets *mode*; an old one would keep its own
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)  # whatever the umask
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path} does not hold an EC private key")
    return key


def pki_paths(directory: Path, racs_users: tuple[str, ...] = ("keyserver",)) -> PkiPaths:
    """Where ``init_pki`` writes (or wrote) each file in *directory*."""

    def pair(stem: str) -> CertAndKey:
        return CertAndKey(directory / f"{stem}.pem", directory / f"{stem}.key")

    return PkiPaths(
        directory,
        key_server_ca=pair("key-server-ca"),
        key_server=pair("key-server"),
        racs_ca=pair("racs-ca"),
        racs_server=pair("racs-server"),
        racs_users={user: pair(f"racs-user-{user}") for user in racs_users},
        se_issuer_ca=pair("se-issuer-ca"),
    )


def init_pki(
    directory: Path,
    *,
    overwrite: bool = False,
    now: Now | None = None,
    key_server_name: str = "keyserver",
    racs_users: tuple[str, ...] = ("keyserver",),
    racs_server_names: tuple[str, ...] = ("localhost",),
    racs_server_ips: tuple[str, ...] = ("127.0.0.1", "::1"),
) -> PkiPaths:
    """Make the three CAs and the TLS certificates as PEM files in *directory*.

    Private keys are written unencrypted with mode 0600; certificates 0644.
    Refuses (``PkiExistsError``, nothing written) when any file already exists,
    unless *overwrite*.
    """
    when = as_datetime(now if now is not None else time.time())
    paths = pki_paths(directory, racs_users)
    everything = [paths.key_server_ca, paths.key_server, paths.racs_ca, paths.racs_server]
    everything += [*paths.racs_users.values(), paths.se_issuer_ca]
    existing = [p for ck in everything for p in (ck.cert, ck.key) if p.exists()]
    if existing and not overwrite:
        raise PkiExistsError(f"{len(existing)} PKI files exist already, e.g. {existing[0]}")
    directory.mkdir(parents=True, exist_ok=True)

    def save(where: CertAndKey, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        _write(where.key, _key_pem(key), 0o600)
        _write(where.cert, _pem(cert), 0o644)

    ks_ca = make_ca("eLock key-server CA", now=when)
    save(paths.key_server_ca, *ks_ca)
    racs_ca = make_ca("eLock RACS CA", now=when)
    save(paths.racs_ca, *racs_ca)
    se_ca = make_ca("eLock secure-element issuer CA", now=when, days=SE_ISSUER_CA_DAYS)
    save(paths.se_issuer_ca, *se_ca)
    key = ec.generate_private_key(ec.SECP256R1())
    uri = key_server_uri(key_server_name)
    cert = issue_tls_certificate(
        *ks_ca, key.public_key(), key_server_name, now=when, client=True, uris=(uri,)
    )
    save(paths.key_server, cert, key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_tls_certificate(
        *racs_ca,
        key.public_key(),
        racs_server_names[0] if racs_server_names else "RACS server",
        now=when,
        server=True,
        dns_names=racs_server_names,
        ip_addresses=racs_server_ips,
    )
    save(paths.racs_server, cert, key)
    for user, where in paths.racs_users.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue_tls_certificate(
            *racs_ca, key.public_key(), user, now=when, client=True, uris=(racs_user_uri(user),)
        )
        save(where, cert, key)
    return paths
