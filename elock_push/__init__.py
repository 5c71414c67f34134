"""Provisioning KeyContainers into a card through RACS inside TLS#2 (DESIGN.md, "double TLS").

The key server imports ``SecureElementPush``; see ``elock_push.push``.
"""

from elock_push.errors import (
    CardBusyError,
    CardError,
    PushError,
    RacsProtocolError,
    TlsSessionError,
    TransportError,
    UntrustedCardError,
)
from elock_push.push import (
    Delete,
    Install,
    Outcome,
    PushReport,
    PushResult,
    Replace,
    SecureElementPush,
)
from elock_push.tls2 import tls2_context

__all__ = [
    "CardBusyError",
    "CardError",
    "Delete",
    "Install",
    "Outcome",
    "PushError",
    "PushReport",
    "PushResult",
    "RacsProtocolError",
    "Replace",
    "SecureElementPush",
    "TlsSessionError",
    "TransportError",
    "UntrustedCardError",
    "tls2_context",
]
