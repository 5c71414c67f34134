from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.lock_server.lockproc import LockProcess


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[LockProcess]:
    require_tool("coap-client-openssl")
    lock = LockProcess.create(tmp_path / "lock")
    lock.start()
    try:
        yield lock
    finally:
        lock.stop()
