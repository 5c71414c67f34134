"""pcscd for tests and benchmarks: ``elock_demo.pcscd``, whose errors fail the test (never skip).

pcscd's socket and the vpcd port are machine-wide: tests that use them run
one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from elock_demo import pcscd as _pcscd
from elock_testkit.peers import require_tool

READER = _pcscd.VPCD_READER
VPCD_DRIVER = _pcscd.VPCD_DRIVER
pcscd_alive = _pcscd.pcscd_alive


@dataclass
class Pcscd:
    daemon: _pcscd.Pcscd

    @property
    def ours(self) -> bool:
        return self.daemon.ours

    @classmethod
    def start(cls) -> Pcscd:
        require_tool("pcscd")
        return cls(_pcscd.Pcscd.start())

    def stop(self) -> None:
        self.daemon.stop()


def wait_for_card(reader: str = READER, timeout: float = 15.0, *, present: bool = True) -> None:
    _pcscd.wait_for_card(reader, timeout, present=present)


class CardConnection:
    """A pyscard connection to the card in ``reader``, closed as a context manager.

    Closing disconnects *and* releases the PC/SC context: a context left to the garbage
    collector is released after its pcscd has gone, and pyscard raises from ``__del__``.
    """

    def __init__(self, reader: str = READER) -> None:
        from smartcard.System import readers

        names = {str(r): r for r in readers()}
        assert reader in names, sorted(names)
        self.connection = names[reader].createConnection()
        try:
            self.connection.connect()
        except BaseException:
            self.connection.release()
            raise

    def transmit(self, apdu: bytes) -> bytes:
        data, sw1, sw2 = self.connection.transmit(list(apdu))
        return bytes(data) + bytes((sw1, sw2))

    def atr(self) -> bytes:
        return bytes(self.connection.getATR())

    def close(self) -> None:
        """Disconnect (which may raise, e.g. for a card reset under this handle), then release."""
        try:
            self.connection.disconnect()
        finally:
            self.connection.release()

    def __enter__(self) -> CardConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
