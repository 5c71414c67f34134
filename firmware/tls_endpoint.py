"""The applet's TLS#2 endpoint: TLS 1.3 records in, records out, provisioning inside.

The APDU dispatcher calls ``open(now)`` when the host starts a session and
``feed(records) -> records`` with whatever TLS bytes arrived (any split);
it sends back what ``feed`` returns. Once the handshake has authenticated the
key server, decrypted application data goes to the ``ProvisioningChannel``
and its responses go back encrypted. ``docs/tls-endpoint.md`` gives the
proposed APDUs (``tls_apdu.py`` implements their framing).

Close and abort:

- the peer's close_notify, or ``close()``: close_notify both ways, CLOSED;
- a fatal alert either way (a record changed in flight fails its AEAD tag:
  bad_record_mac): FAILED. The failing record was never decrypted, so the
  command it carried never reached the store; commands in earlier, intact
  records were complete and each one's store change atomic;
- the provisioning stream itself breaks (a bad TLV header): the card answers
  MALFORMED and closes with close_notify;
- ``abort()`` (card reset, applet deselected): the session is dropped, nothing sent.
"""

from __future__ import annotations

import enum
import logging
import os

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.provisioning_channel import ContainerStore, ProvisioningChannel
from firmware.tls13 import (
    ApplicationData,
    ConnectionClosed,
    HandshakeCompleted,
    ServerState,
    Tls13Server,
)
from firmware.tls13.handshake import Rng
from firmware.tls13.records import MAX_PLAINTEXT

logger = logging.getLogger(__name__)


class EndpointState(enum.Enum):
    IDLE = "no session"
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


class EndpointUsageError(Exception):
    """The dispatcher called the endpoint out of order (e.g. ``feed`` before ``open``)."""


class TlsEndpoint:
    def __init__(
        self,
        *,
        certificate_chain: list[x509.Certificate],
        private_key: ec.EllipticCurvePrivateKey,
        client_trust_anchor: x509.Certificate,
        store: ContainerStore,
        rng: Rng = os.urandom,
        max_record: int = MAX_PLAINTEXT,
    ) -> None:
        self._chain = certificate_chain
        self._key = private_key
        self._anchor = client_trust_anchor
        self._store = store
        self._rng = rng
        self._max_record = max_record
        self._server: Tls13Server | None = None
        self._channel: ProvisioningChannel | None = None
        self._state = EndpointState.IDLE
        self.closed_by: ConnectionClosed | None = None
        self.peer_certificate: x509.Certificate | None = None

    def __repr__(self) -> str:
        return f"TlsEndpoint(state={self._state.name})"

    @property
    def state(self) -> EndpointState:
        return self._state

    def open(self, now: float) -> None:
        """Start a new session (dropping any current one) with *now* for certificate checks."""
        self._server = Tls13Server(
            certificate_chain=self._chain,
            private_key=self._key,
            client_trust_anchor=self._anchor,
            now=now,
            rng=self._rng,
            max_record=self._max_record,
        )
        self._channel = None
        self.closed_by = None
        self.peer_certificate = None
        self._set_state(EndpointState.HANDSHAKING)

    def feed(self, records: bytes) -> bytes:
        """Process TLS bytes from the key server; return the TLS bytes to send back."""
        server = self._server
        if server is None:
            raise EndpointUsageError("no TLS session: open() first")
        server.receive(records)
        self._drain(server)
        return server.data_to_send()

    def close(self) -> bytes:
        """End the session with close_notify; return the records to send."""
        server = self._server
        if server is None:
            return b""
        server.close()
        self._drain(server)
        return server.data_to_send()

    def abort(self) -> None:
        """Forget the session at once (card reset or deselect): nothing is sent."""
        if self._server is not None:
            logger.info("TLS endpoint aborted in state %s", self._state.name)
        self._server = None
        self._channel = None
        self._set_state(EndpointState.IDLE)

    def _set_state(self, state: EndpointState) -> None:
        if state is not self._state:
            logger.debug("TLS endpoint %s -> %s", self._state.name, state.name)
            self._state = state

    def _drain(self, server: Tls13Server) -> None:
        while (event := server.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                self.peer_certificate = event.peer_certificate
                self._channel = ProvisioningChannel(self._store)
                self._set_state(EndpointState.OPEN)
            elif isinstance(event, ApplicationData):
                assert self._channel is not None
                responses = self._channel.receive(event.data)
                if responses and server.state is ServerState.CONNECTED:
                    server.send_application_data(responses)
                if self._channel.failed and server.state is ServerState.CONNECTED:
                    server.close()  # the provisioning stream lost step: end the session
            else:
                self.closed_by = event
                self._channel = None
                ended = server.state is ServerState.CLOSED
                self._set_state(EndpointState.CLOSED if ended else EndpointState.FAILED)
