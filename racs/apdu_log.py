"""An audit trail of every APDU the server exchanged with a card (``--log-apdus FILE``).

One line per exchange with the card, GET RESPONSE rounds included:
``<unix time> sid=<SID> user=<CN> <SEID> > <command hex> < <response hex>``. It
records what crosses the RACS server, which is the point: with TLS#2 inside
(``docs/tls-endpoint.md``) it must show only ciphertext, and a test checks that.
The file is opened for appending, mode 0600, and flushed after every line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TextIO


class ApduLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._out: TextIO = os.fdopen(fd, "a", encoding="ascii")

    def __repr__(self) -> str:
        return f"ApduLog({str(self.path)!r})"

    def record(self, sid: int, user: str, seid: str, command: bytes, response: bytes) -> None:
        self._out.write(
            f"{time.time():.3f} sid={sid} user={user} {seid}"
            f" > {command.hex().upper()} < {response.hex().upper()}\n"
        )
        self._out.flush()

    def close(self) -> None:
        self._out.close()
