"""A card file run in this process: the applet behind a transmit function.

This is what pcscd and vpcd give a host, without the sockets: the key host's
``--card FILE`` and the tests use it. The card file is locked for as long as
the card is in use (``elock-se serve`` takes the same lock), and saved after
every APDU that changed it, because a card commits each APDU: a PIN try spent
must stay spent even if the host process dies right after.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import BinaryIO

from firmware.applet import Applet
from firmware.store import Store
from firmware.virtual import cardfile


class CardInUseError(cardfile.CardFileError):
    """Another process (``elock-se serve``?) holds this card file."""


class InProcessCard:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: BinaryIO | None = open(path.with_name(path.name + ".lock"), "a+b")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise CardInUseError(f"{path} is in use (served?); reach it with --reader") from None
        try:
            self._eeprom = cardfile.load(path)
        except BaseException:
            self.close()
            raise
        self.applet = Applet(Store(self._eeprom))

    def transmit(self, command: bytes) -> bytes:
        if self._lock is None:
            raise cardfile.CardFileError("the card was closed")
        response = self.applet.process(command)
        if self._eeprom.dirty:
            cardfile.save(self.path, self._eeprom)
        return response

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> InProcessCard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
