"""One TCP client on loopback, served by a thread: the shell of the tests' bridges that let
``openssl s_client`` talk to a sans-I/O endpoint (the TLS 1.3 server, or the applet's APDUs).
"""

from __future__ import annotations

import socket
import threading
from typing import Self


class OneClientBridge:
    """Accepts one connection and hands it to ``serve``; a socket error lands in ``error``."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(30)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(timeout=30)

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:
            self.error = exc
            return
        with conn:
            conn.settimeout(30)
            try:
                self.serve(conn)
            except OSError as exc:
                self.error = exc
