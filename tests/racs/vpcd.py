"""A minimal card side of vsmartcard's vpcd protocol, so pcscd shows our test applet.

pcscd's vpcd driver listens on TCP 35963; the card connects to it. Each message
is a 2-byte big-endian length and a payload: one byte is a control (0 power
off, 1 power on, 2 reset, 4 "send your ATR"), anything longer is an APDU that
gets a response APDU back. TCP_QUICKACK before each read avoids the delayed-ACK
stall that docs/DESIGN.md measured at 48 ms per APDU.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from elock_testkit.racs_applets import TestApplet
from racs.backends import DEFAULT_ATR

VPCD_PORT = 35963


class VirtualCard(threading.Thread):
    def __init__(self, applet: TestApplet, atr: bytes = DEFAULT_ATR, port: int = VPCD_PORT) -> None:
        super().__init__(daemon=True, name="vpcd-card")
        self.applet, self.atr, self.port = applet, atr, port
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.sock: socket.socket | None = None

    def _recv(self, sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            if hasattr(socket, "TCP_QUICKACK"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("vpcd closed the connection")
            data += chunk
        return data

    def run(self) -> None:
        deadline = time.monotonic() + 10
        while not self.stopping.is_set():
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)
        if self.sock is None:
            return
        sock = self.sock
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected.set()
        try:
            while not self.stopping.is_set():
                (length,) = struct.unpack(">H", self._recv(sock, 2))
                payload = self._recv(sock, length)
                if length == 1:
                    if payload[0] in (1, 2):
                        self.applet.reset()
                    elif payload[0] == 4:
                        sock.sendall(struct.pack(">H", len(self.atr)) + self.atr)
                    continue
                response = self.applet.process(payload)
                sock.sendall(struct.pack(">H", len(response)) + response)
        except OSError:
            pass

    def stop(self) -> None:
        self.stopping.set()
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
