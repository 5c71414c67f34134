"""Shared test fixtures.

A test that needs a real peer (libcoap, pcscd, PostgreSQL, Chromium) calls
``require_tool``: when the peer is missing the test *fails*, never skips, because
the project's own install script is meant to have installed it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from elock_testkit import peers

if TYPE_CHECKING:
    from elock_testkit.lockproc import LockProcess


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


def _peer_guard(name: str) -> None:
    if _running is not None and _running.get_closest_marker("peer") is None:
        pytest.fail(
            f"{_running.nodeid} needs the real peer {name!r}: mark it "
            "@pytest.mark.peer (or pytestmark in its module) so the fast run leaves it out"
        )


peers.guard = _peer_guard


def require_tool(name: str) -> str:
    """The peer's path; a missing peer fails the test (never skips), as does a missing marker."""
    try:
        return peers.require_tool(name)
    except peers.MissingPeerError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[LockProcess]:
    """A real lock process (``elock-lock serve``) on a free port, stopped after the test."""
    from elock_testkit.lockproc import LockProcess  # lockproc imports require_tool

    require_tool("coap-client-openssl")
    with LockProcess.create(tmp_path / "lock") as lock:
        yield lock
