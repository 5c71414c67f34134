"""Alerts, and the two kinds of failure the DTLS client keeps apart.

``DtlsUsageError`` is the caller's mistake and is raised to the caller. ``PeerError``
and its subclasses are the peer's: they are raised while a datagram is being handled
and never leave ``DtlsClient.receive_datagram``, which answers with the fatal alert
the class names and ends the connection (h11 keeps its Local and Remote protocol
errors apart the same way; aioquic's ``Alert`` carries its description likewise).
The codec in ``firmware.dtls.messages`` raises them without knowing any state.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

ALERT_WARNING = 1
ALERT_FATAL = 2


class AlertDescription(IntEnum):
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    illegal_parameter = 47
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    internal_error = 80
    no_renegotiation = 100
    unsupported_extension = 110


class DtlsUsageError(Exception):
    """The caller misused the API (a local error, never caused by the peer)."""


class PeerError(Exception):
    """The peer broke the protocol; ``description`` is the fatal alert we answer with."""

    description: ClassVar[AlertDescription] = AlertDescription.internal_error


class UnexpectedMessageError(PeerError):
    description = AlertDescription.unexpected_message


class DecodeError(PeerError):
    description = AlertDescription.decode_error


class IllegalParameterError(PeerError):
    description = AlertDescription.illegal_parameter


class HandshakeFailureError(PeerError):
    description = AlertDescription.handshake_failure


class DecryptError(PeerError):
    description = AlertDescription.decrypt_error


class ProtocolVersionError(PeerError):
    description = AlertDescription.protocol_version


class UnsupportedExtensionError(PeerError):
    description = AlertDescription.unsupported_extension
