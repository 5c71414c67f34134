"""The virtual card: the applet behind pcscd's vpcd reader driver (vsmartcard).

pcscd with ``libifdvpcd`` listens on TCP (127.0.0.1:35963 for the reader
"Virtual PCD 00 00"); the card side connects to it. Every message is a 2-byte
big-endian length and a payload. A 1-byte payload is a control byte (0 power
off, 1 power on, 2 reset, 4 "send your ATR", which we answer); anything longer
is a command APDU, answered with the response APDU.

Every frame the driver waits on gets an answer, whatever it holds: the driver
holds its reader lock until the answer comes, so one unanswered frame hangs
the reader for every client. A 1-byte *APDU* is framed exactly like a control
byte, so: a byte that is no control code is an APDU, answered 6700 (wrong
length) at once; 4 gets the ATR, which answers an APDU [04] as well; for 0, 1
and 2 the card does what the control says and then watches the line. After a
real control the driver always sends again soon (1 and 2 are followed by 4 at
once, and pcscd polls with 4 every 400 ms after a 0); a driver that sends
nothing for ``AMBIGUOUS_WAIT`` is waiting for an answer, and gets 6700.

What cannot be framed at all (an APDU over 65,535 bytes) never reaches the
card: the driver refuses it and drops the connection. The card then stays out
of the reader for ``REINSERT_DELAY``, longer than pcscd's 400 ms presence
poll, and comes back: pcscd must *see* it gone. A host that disconnects after
the drop makes pcscd mark the reader empty (its power-down fails), and only a
poll that finds the slot empty resets pcscd's own view; a card back before
that poll would stay "not inserted" until it left again. The host reconnects
and SELECTs again (the card was reset).

Latency: without TCP_QUICKACK the kernel delays our ACKs and pcscd's next
write waits on them, about 40 ms per APDU; setting it before *every* read
(Linux clears it again) brings a round trip through pcscd under a millisecond.
``after_apdu`` runs after each command and before its response is sent, so
the CLI can save the card file and a host never sees a success that a crash
could undo. When pcscd goes away the card reconnects until stopped.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
from collections.abc import Callable

from elock_common.card_protocol import ATR
from firmware.applet import Applet

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4
RECONNECT_DELAY = 0.2
REINSERT_DELAY = 1.0  # seconds: more than two of pcscd's 400 ms presence polls
AMBIGUOUS_WAIT = 2.0  # seconds: 5 of pcscd's presence polls
SW_WRONG_LENGTH = b"\x67\x00"


class VirtualCard:
    def __init__(
        self,
        applet: Applet,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        atr: bytes = ATR,
        after_apdu: Callable[[], None] | None = None,
    ) -> None:
        self.applet, self.host, self.port, self.atr = applet, host, port, atr
        self.after_apdu = after_apdu
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self._sock: socket.socket | None = None
        self.apdus = 0

    def __repr__(self) -> str:
        return f"VirtualCard({self.host}:{self.port}, connected={self.connected.is_set()})"

    def run(self) -> None:
        """Connect, serve, and reconnect after pcscd restarts, until ``stop``."""
        announced = False
        while not self.stopping.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2)
            except OSError:
                if not announced:
                    log.info("waiting for pcscd's vpcd driver on %s:%d", self.host, self.port)
                    announced = True
                self.stopping.wait(RECONNECT_DELAY)
                continue
            announced = False
            self._sock = sock
            try:
                self.serve(sock)
            except (OSError, ConnectionError) as exc:
                log.info("vpcd connection ended: %s", type(exc).__name__)
            finally:
                self.connected.clear()
                self._sock = None
                sock.close()
            self.applet.reset()  # the reader is gone: the card lost power
            self.stopping.wait(REINSERT_DELAY)  # out long enough for pcscd to see it leave

    def serve(self, sock: socket.socket) -> None:
        """Answer vpcd messages on a connected socket until it closes."""
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info("card inserted in vpcd at %s:%d", self.host, self.port)
        self.connected.set()
        while not self.stopping.is_set():
            (length,) = struct.unpack(">H", _recv_exact(sock, 2))
            payload = _recv_exact(sock, length)
            if length == 1:
                self._control(sock, payload[0])
                continue
            if length == 0:
                log.warning("empty vpcd frame: answering 6700")
                _send_frame(sock, SW_WRONG_LENGTH)
                continue
            response = self.applet.process(payload)
            self.apdus += 1
            if self.after_apdu is not None:
                try:
                    self.after_apdu()
                except OSError as exc:  # no answer: the host retries (installs are idempotent)
                    log.error("saving the card failed (%s); dropping the answer", exc)
                    raise
            _send_frame(sock, response)

    def _control(self, sock: socket.socket, code: int) -> None:
        if code == GET_ATR:
            _send_frame(sock, self.atr)
        elif code in (POWER_OFF, POWER_ON, RESET):
            log.debug("vpcd control %d", code)
            self.applet.reset()
            if not _line_active_within(sock, AMBIGUOUS_WAIT, self.stopping):
                log.warning("vpcd byte %d was a 1-byte APDU (driver waits): answering 6700", code)
                _send_frame(sock, SW_WRONG_LENGTH)
        else:
            log.warning("1-byte APDU %02X: answering 6700", code)
            _send_frame(sock, SW_WRONG_LENGTH)

    def stop(self) -> None:
        self.stopping.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)


def _line_active_within(sock: socket.socket, seconds: float, stopping: threading.Event) -> bool:
    """Whether the driver sends something (or hangs up) within ``seconds``."""
    ready, _, _ = select.select([sock], [], [], seconds)
    return bool(ready) or stopping.is_set()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if hasattr(socket, "TCP_QUICKACK"):  # Linux only; re-armed before every read
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("vpcd closed the connection")
        buf += chunk
    return bytes(buf)
