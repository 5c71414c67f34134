"""A tiny threaded TCP server that carries bytes between a socket and a sans-I/O ``Tls13Server``.

For interop tests with ``openssl s_client``: the bridge owns no TLS logic; it
feeds what arrives into the server, writes back ``data_to_send()``, and lets a
callback react to each event (greet on HandshakeCompleted, echo, close).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from firmware.tls13 import ServerState, Tls13Server, TlsEvent

OnEvent = Callable[[Tls13Server, TlsEvent], None]


class TcpBridge:
    def __init__(self, make_server: Callable[[], Tls13Server], on_event: OnEvent) -> None:
        self._make_server = make_server
        self._on_event = on_event
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(30)
        self.port: int = self._listener.getsockname()[1]
        self.events: list[TlsEvent] = []
        self.server: Tls13Server | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TcpBridge:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:
            self.error = exc
            return
        server = self.server = self._make_server()
        with conn:
            conn.settimeout(30)
            try:
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
            except OSError as exc:
                self.error = exc
