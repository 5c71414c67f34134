"""Shared test fixtures.

A test that needs a real peer (libcoap, pcscd, PostgreSQL, Chromium) calls
``require_tool``: when the peer is missing the test *fails*, never skips, because
the project's own install script is meant to have installed it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.lock_server.lockproc import LockProcess


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"required peer {name!r} is not installed; run scripts/install.sh")
    return path


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[LockProcess]:
    """A real lock process (``elock-lock serve``) on a free port, stopped after the test."""
    from tests.lock_server.lockproc import LockProcess  # lockproc imports require_tool

    require_tool("coap-client-openssl")
    lock = LockProcess.create(tmp_path / "lock")
    lock.start()
    try:
        yield lock
    finally:
        lock.stop()
