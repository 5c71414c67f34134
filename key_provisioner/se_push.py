"""The key server's side of TLS#1 and TLS#2: ``SecureElementPush`` clients from the settings,
and what a failed push means for the key.

The SSL contexts and the SE issuer CA are loaded once, at start-up (a bad file
is a ``ConfigError`` naming the setting); a ``SecureElementPush`` is then made
per RACS server, as registered with each secure element (``host:port``,
``[v6]:port``).
"""

from __future__ import annotations

import enum
import ssl
from pathlib import Path

from cryptography import x509

from elock_push import (
    CardBusyError,
    CardError,
    PushError,
    SecureElementPush,
    UntrustedCardError,
    tls2_context,
)
from key_provisioner.core.config import PushSettings
from key_provisioner.core.errors import ConfigError
from racs.client import client_ssl_context


class Verdict(enum.Enum):
    BUSY = "busy"  # another RACS session holds the card: again soon, not a failed try
    TRANSIENT = "transient"  # RACS unreachable, a cut connection, a broken TLS#2: back off
    PERMANENT = "permanent"  # will not change by itself: the key is ``failed``


# A card that is not the one registered, or that answers outside the protocol,
# will not change by itself. The rest (RACS unreachable or refusing, a cut
# connection, a TLS#2 session that broke) may well work on the next try.
PERMANENT = (UntrustedCardError, CardError)


def verdict(exc: PushError) -> Verdict:
    """What to do with the keys of a push that failed with *exc*.

    Several workers (or replicas) may visit one card at once; RACS then
    refuses all but one with its IN_USE class (``-7YZ ... locked by another
    session``), which ``elock_push`` raises as ``CardBusyError``. That is the
    normal course of things, never a failure.
    """
    if isinstance(exc, CardBusyError):
        return Verdict.BUSY
    return Verdict.PERMANENT if isinstance(exc, PERMANENT) else Verdict.TRANSIENT


class PushClients:
    def __init__(self, settings: PushSettings) -> None:
        self.settings = settings
        try:
            self.racs_tls = client_ssl_context(
                settings.racs_client_cert, settings.racs_client_key, settings.racs_ca
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "push.racs_client_cert/racs_client_key/racs_ca do not load"
                f" ({settings.racs_client_cert}): {exc}"
            ) from None
        try:
            self.tls2 = tls2_context(settings.tls2_cert, settings.tls2_key, settings.se_issuer_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"push.tls2_cert/tls2_key/se_issuer_ca do not load ({settings.tls2_cert}): {exc}"
            ) from None
        self.se_issuer_ca = _certificate("push.se_issuer_ca", settings.se_issuer_ca)

    def __repr__(self) -> str:
        return "PushClients(<credentials hidden>)"

    def for_server(self, racs_server: str) -> SecureElementPush:
        host, port = split_host_port(racs_server)
        return SecureElementPush(
            racs_host=host,
            racs_port=port,
            racs_tls=self.racs_tls,
            tls2=self.tls2,
            se_issuer_ca=self.se_issuer_ca,
            server_hostname=self.settings.racs_server_name,
            timeout=self.settings.timeout,
        )


def split_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``, as ``POST /secure-elements`` accepts them."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _certificate(setting: str, path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{setting}: {path} is not a PEM certificate ({exc})") from None
