"""Finding the real programs the tests and benchmarks talk to.

``require_tool`` is the one place that asks for a peer, so the test suite can hook it
(``guard``) to check that a test using a peer is marked as one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable


class MissingPeerError(RuntimeError):
    """A real peer the project's install script should have installed is not on this machine."""


# Called with the peer's name before it is looked up (tests/conftest.py checks the marker).
guard: Callable[[str], None] | None = None


def require_tool(name: str) -> str:
    if guard is not None:
        guard(name)
    path = shutil.which(name)
    if path is None:
        raise MissingPeerError(f"required peer {name!r} is not installed; run scripts/install.sh")
    return path
