"""A tiny threaded TCP server that carries bytes between a socket and a sans-I/O ``Tls13Server``.

For interop tests with ``openssl s_client``: the bridge owns no TLS logic; it
feeds what arrives into the server, writes back ``data_to_send()``, and lets a
callback react to each event (greet on HandshakeCompleted, echo, close).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from elock_testkit.bridge import OneClientBridge
from firmware.tls13 import ServerState, Tls13Server, TlsEvent

OnEvent = Callable[[Tls13Server, TlsEvent], None]


class TcpBridge(OneClientBridge):
    def __init__(self, make_server: Callable[[], Tls13Server], on_event: OnEvent) -> None:
        super().__init__()
        self._make_server = make_server
        self._on_event = on_event
        self.events: list[TlsEvent] = []
        self.server: Tls13Server | None = None

    def serve(self, conn: socket.socket) -> None:
        server = self.server = self._make_server()
        while server.state not in (ServerState.CLOSED, ServerState.FAILED):
            data = conn.recv(65536)
            if not data:
                break
            server.receive(data)
            while (event := server.next_event()) is not None:
                self.events.append(event)
                self._on_event(server, event)
            conn.sendall(server.data_to_send())
        conn.sendall(server.data_to_send())
