"""pcscd for tests: ``elock_demo.pcscd``, with its errors as test failures (never skips).

pcscd's socket and the vpcd port are machine-wide: tests that use them run
one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from elock_demo import pcscd as _pcscd
from tests.conftest import require_tool

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
        try:
            return cls(_pcscd.Pcscd.start())
        except _pcscd.PcscdError as exc:
            pytest.fail(str(exc))

    def stop(self) -> None:
        self.daemon.stop()


def wait_for_card(reader: str = READER, timeout: float = 15.0, *, present: bool = True) -> None:
    try:
        _pcscd.wait_for_card(reader, timeout, present=present)
    except _pcscd.PcscdError as exc:
        pytest.fail(str(exc))
