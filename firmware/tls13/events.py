"""What ``Tls13Server`` tells its caller: the named states and the events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cryptography import x509

from firmware.tls13.alerts import AlertDescription


class ServerState(enum.Enum):
    EXPECT_CLIENT_HELLO = "expect ClientHello"
    EXPECT_RETRIED_CLIENT_HELLO = "expect ClientHello after HelloRetryRequest"
    EXPECT_CLIENT_CERTIFICATE = "expect client Certificate"
    EXPECT_CLIENT_CERTIFICATE_VERIFY = "expect client CertificateVerify"
    EXPECT_CLIENT_FINISHED = "expect client Finished"
    CONNECTED = "connected"
    CLOSED = "closed"  # close_notify sent (and possibly received): orderly end
    FAILED = "failed"  # a fatal alert was sent or received


HANDSHAKE_STATES = frozenset(
    {
        ServerState.EXPECT_CLIENT_HELLO,
        ServerState.EXPECT_RETRIED_CLIENT_HELLO,
        ServerState.EXPECT_CLIENT_CERTIFICATE,
        ServerState.EXPECT_CLIENT_CERTIFICATE_VERIFY,
        ServerState.EXPECT_CLIENT_FINISHED,
    }
)


@dataclass(frozen=True)
class HandshakeCompleted:
    """The client proved possession of a certificate that chains to the trust anchor."""

    peer_certificate: x509.Certificate
    retried: bool  # True when a HelloRetryRequest was needed


@dataclass(frozen=True)
class ApplicationData:
    """Decrypted application bytes; ``repr`` shows only their length (they may hold PSKs)."""

    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"ApplicationData(<{len(self.data)} bytes>)"


@dataclass(frozen=True)
class ConnectionClosed:
    """The connection ended: orderly (close_notify) or with a fatal alert.

    ``alert`` is an ``AlertDescription`` or, for a value the peer sent that
    RFC 8446 does not name, the bare int. ``by_peer`` says who ended it.
    """

    alert: AlertDescription | int
    reason: str
    by_peer: bool = False


TlsEvent = HandshakeCompleted | ApplicationData | ConnectionClosed
