"""TLS alerts (RFC 8446 6) and the errors that carry them.

Every error the peer can cause is a ``TlsAlert`` subclass whose class attribute
``description`` is the alert the server sends before it fails the connection
(the aioquic ``Alert.description`` habit). ``TlsUsageError`` is apart: it means
*our* caller misused the API (h11's Local/RemoteProtocolError split) and is the
only exception ``Tls13Server`` lets out.

Messages are written for logs and events: they name what was wrong and never
carry key material, traffic secrets or application data.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class AlertLevel(enum.IntEnum):
    WARNING = 1
    FATAL = 2


class AlertDescription(enum.IntEnum):
    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_REVOKED = 44
    CERTIFICATE_EXPIRED = 45
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    ACCESS_DENIED = 49
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    INAPPROPRIATE_FALLBACK = 86
    USER_CANCELED = 90
    MISSING_EXTENSION = 109
    UNSUPPORTED_EXTENSION = 110
    UNRECOGNIZED_NAME = 112
    BAD_CERTIFICATE_STATUS_RESPONSE = 113
    UNKNOWN_PSK_IDENTITY = 115
    CERTIFICATE_REQUIRED = 116
    NO_APPLICATION_PROTOCOL = 120


def describe(value: int) -> AlertDescription | int:
    """The enum member for *value*, or the bare int when the peer sent an unknown one."""
    try:
        return AlertDescription(value)
    except ValueError:
        return value


class TlsError(Exception):
    """Base of everything this package raises."""


class TlsUsageError(TlsError):
    """The local caller misused the API (for example, sent data before the handshake)."""


class TlsAlert(TlsError):  # noqa: N818 (named after the wire concept, as aioquic does)
    """The peer misbehaved; the connection fails with ``description``."""

    description: ClassVar[AlertDescription] = AlertDescription.INTERNAL_ERROR


class UnexpectedMessage(TlsAlert):
    description = AlertDescription.UNEXPECTED_MESSAGE


class BadRecordMac(TlsAlert):
    description = AlertDescription.BAD_RECORD_MAC


class RecordOverflow(TlsAlert):
    description = AlertDescription.RECORD_OVERFLOW


class HandshakeFailure(TlsAlert):
    description = AlertDescription.HANDSHAKE_FAILURE


class BadCertificate(TlsAlert):
    description = AlertDescription.BAD_CERTIFICATE


class UnsupportedCertificate(TlsAlert):
    description = AlertDescription.UNSUPPORTED_CERTIFICATE


class CertificateExpired(TlsAlert):
    description = AlertDescription.CERTIFICATE_EXPIRED


class IllegalParameter(TlsAlert):
    description = AlertDescription.ILLEGAL_PARAMETER


class UnknownCa(TlsAlert):
    description = AlertDescription.UNKNOWN_CA


class DecodeError(TlsAlert):
    description = AlertDescription.DECODE_ERROR


class DecryptError(TlsAlert):
    description = AlertDescription.DECRYPT_ERROR


class ProtocolVersion(TlsAlert):
    description = AlertDescription.PROTOCOL_VERSION


class InternalError(TlsAlert):
    description = AlertDescription.INTERNAL_ERROR


class MissingExtension(TlsAlert):
    description = AlertDescription.MISSING_EXTENSION


class CertificateRequired(TlsAlert):
    description = AlertDescription.CERTIFICATE_REQUIRED
