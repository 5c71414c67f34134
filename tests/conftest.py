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


# The test being set up or run: ``require_tool`` checks that it carries the ``peer``
# marker, so that ``pytest -m "not peer"`` (the fast run) never reaches a real peer.
_running: pytest.Item | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    global _running
    _running = item


def pytest_runtest_teardown(item: pytest.Item) -> None:
    global _running
    _running = None


def require_tool(name: str) -> str:
    if _running is not None and _running.get_closest_marker("peer") is None:
        pytest.fail(
            f"{_running.nodeid} needs the real peer {name!r}: mark it "
            "@pytest.mark.peer (or pytestmark in its module) so the fast run leaves it out"
        )
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
