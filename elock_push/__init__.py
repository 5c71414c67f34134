"""Provisioning KeyContainers into a card inside TLS#2 (DESIGN.md, "double TLS").

Two deliveries, one push: ``SecureElementPush`` dials a RACS server that hosts
the card; ``RelayLink`` carries the same ``CardSession`` over a connection the
card's host opened (a phone behind NAT). See ``elock_push.channel``.
"""

from elock_push.channel import CardChannel
from elock_push.errors import (
    CardBusyError,
    CardError,
    PushError,
    RacsProtocolError,
    TlsSessionError,
    TransportError,
    UnconfirmedCommandsError,
    UntrustedCardError,
)
from elock_push.push import (
    CardSession,
    Delete,
    Install,
    Operation,
    Outcome,
    PushReport,
    PushResult,
    Replace,
    SecureElementPush,
    read_certificate,
)
from elock_push.relay import HostConnection, RelayLink
from elock_push.tls2 import tls2_context

__all__ = [
    "CardBusyError",
    "CardChannel",
    "CardError",
    "CardSession",
    "Delete",
    "HostConnection",
    "Install",
    "Operation",
    "Outcome",
    "PushError",
    "PushReport",
    "PushResult",
    "RacsProtocolError",
    "RelayLink",
    "Replace",
    "SecureElementPush",
    "TlsSessionError",
    "TransportError",
    "UnconfirmedCommandsError",
    "UntrustedCardError",
    "read_certificate",
    "tls2_context",
]
