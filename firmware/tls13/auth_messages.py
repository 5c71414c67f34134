"""The messages after the hellos (RFC 8446 4.3, 4.4, 4.6.3), with pull/push pairs.

EncryptedExtensions, CertificateRequest, Certificate, CertificateVerify,
Finished and KeyUpdate. The hellos live in ``messages.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware.tls13.alerts import DecodeError, IllegalParameter
from firmware.tls13.messages import ExtensionType
from firmware.tls13.wire import (
    Buffer,
    Extension,
    Writer,
    pull_block,
    pull_extensions,
    pull_opaque,
    pull_uint16_list,
    push_extensions,
)

MAX_CERTIFICATES = 4  # leaf and at most three issuers: more is refused
VERIFY_DATA_LENGTH = 32  # SHA-256


def _done(buf: Buffer, what: str) -> None:
    if not buf.eof():
        raise DecodeError(f"bytes after the {what}")


@dataclass(frozen=True)
class EncryptedExtensions:
    extensions: list[Extension] = field(default_factory=list)


def push_encrypted_extensions(msg: EncryptedExtensions) -> bytes:
    out = Writer()
    push_extensions(out, msg.extensions)
    return out.getvalue()


def pull_encrypted_extensions(body: bytes) -> EncryptedExtensions:
    buf = Buffer(body)
    extensions = pull_extensions(buf)
    _done(buf, "EncryptedExtensions")
    return EncryptedExtensions(extensions)


@dataclass(frozen=True)
class CertificateRequest:
    context: bytes
    signature_algorithms: list[int]
    certificate_authorities: list[bytes] = field(default_factory=list)  # DER Names


def push_certificate_request(msg: CertificateRequest) -> bytes:
    out = Writer()
    out.push_opaque(msg.context, 1)
    algorithms = Writer()
    algorithms.push_uint16_list(msg.signature_algorithms, 2)
    extensions: list[Extension] = [(ExtensionType.SIGNATURE_ALGORITHMS, algorithms.getvalue())]
    if msg.certificate_authorities:
        authorities = Writer()
        with authorities.push_block(2):
            for name in msg.certificate_authorities:
                authorities.push_opaque(name, 2)
        extensions.append((ExtensionType.CERTIFICATE_AUTHORITIES, authorities.getvalue()))
    push_extensions(out, extensions)
    return out.getvalue()


def pull_certificate_request(body: bytes) -> CertificateRequest:
    buf = Buffer(body)
    context = pull_opaque(buf, 1)
    extensions = dict(pull_extensions(buf))
    _done(buf, "CertificateRequest")
    if ExtensionType.SIGNATURE_ALGORITHMS not in extensions:
        raise DecodeError("CertificateRequest without signature_algorithms")
    algorithms_buf = Buffer(extensions[ExtensionType.SIGNATURE_ALGORITHMS])
    algorithms = pull_uint16_list(algorithms_buf, 2)
    _done(algorithms_buf, "signature_algorithms")
    authorities: list[bytes] = []
    if ExtensionType.CERTIFICATE_AUTHORITIES in extensions:
        names = Buffer(extensions[ExtensionType.CERTIFICATE_AUTHORITIES])
        with pull_block(names, 2) as inner:
            while not inner.eof():
                authorities.append(pull_opaque(inner, 2, minimum=1))
        _done(names, "certificate_authorities")
    return CertificateRequest(context, algorithms, authorities)


@dataclass(frozen=True)
class Certificate:
    context: bytes
    certificates: list[bytes] = field(repr=False)  # DER, leaf first


def push_certificate(msg: Certificate) -> bytes:
    out = Writer()
    out.push_opaque(msg.context, 1)
    with out.push_block(3):
        for der in msg.certificates:
            out.push_opaque(der, 3)
            out.push_uint16(0)  # no per-certificate extensions
    return out.getvalue()


def pull_certificate(body: bytes) -> Certificate:
    buf = Buffer(body)
    context = pull_opaque(buf, 1)
    certificates: list[bytes] = []
    with pull_block(buf, 3) as entries:
        while not entries.eof():
            if len(certificates) == MAX_CERTIFICATES:
                raise IllegalParameter(f"more than {MAX_CERTIFICATES} certificates in a chain")
            certificates.append(pull_opaque(entries, 3, minimum=1))
            pull_opaque(entries, 2)  # per-certificate extensions (OCSP, SCT): ignored
    _done(buf, "Certificate")
    return Certificate(context, certificates)


@dataclass(frozen=True)
class CertificateVerify:
    algorithm: int
    signature: bytes


def push_certificate_verify(msg: CertificateVerify) -> bytes:
    out = Writer()
    out.push_uint16(msg.algorithm)
    out.push_opaque(msg.signature, 2)
    return out.getvalue()


def pull_certificate_verify(body: bytes) -> CertificateVerify:
    buf = Buffer(body)
    msg = CertificateVerify(buf.pull_uint16(), pull_opaque(buf, 2, minimum=1))
    _done(buf, "CertificateVerify")
    return msg


@dataclass(frozen=True)
class Finished:
    verify_data: bytes


def push_finished(msg: Finished) -> bytes:
    return msg.verify_data


def pull_finished(body: bytes) -> Finished:
    if len(body) != VERIFY_DATA_LENGTH:
        raise DecodeError(f"Finished of {len(body)} bytes, not {VERIFY_DATA_LENGTH}")
    return Finished(body)


@dataclass(frozen=True)
class KeyUpdate:
    update_requested: bool


def push_key_update(msg: KeyUpdate) -> bytes:
    return b"\x01" if msg.update_requested else b"\x00"


def pull_key_update(body: bytes) -> KeyUpdate:
    if len(body) != 1:
        raise DecodeError("KeyUpdate is not one byte")
    if body[0] > 1:
        raise IllegalParameter(f"KeyUpdate request_update {body[0]} is neither 0 nor 1")
    return KeyUpdate(body[0] == 1)
