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
