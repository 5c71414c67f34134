"""A sans-I/O TLS 1.3 server for the secure element applet (TLS#2 of provisioning).

Profile: TLS_AES_128_GCM_SHA256, ECDHE secp256r1 (HelloRetryRequest when the
client's first key share is another group), ecdsa_secp256r1_sha256
certificates, mandatory client certificates chaining to one trust anchor; no
PSK, resumption, 0-RTT or session tickets. See ``docs/tls-endpoint.md``.
"""

from firmware.tls13.alerts import AlertDescription, TlsAlert, TlsError, TlsUsageError
from firmware.tls13.events import (
    ApplicationData,
    ConnectionClosed,
    HandshakeCompleted,
    ServerState,
    TlsEvent,
)
from firmware.tls13.server import Tls13Server

__all__ = [
    "AlertDescription",
    "ApplicationData",
    "ConnectionClosed",
    "HandshakeCompleted",
    "ServerState",
    "Tls13Server",
    "TlsAlert",
    "TlsError",
    "TlsEvent",
    "TlsUsageError",
]
