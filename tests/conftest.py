"""Shared test fixtures.

A test that needs a real peer (libcoap, pcscd, PostgreSQL, Chromium) calls
``require_tool``: when the peer is missing the test *fails*, never skips, because
the project's own install script is meant to have installed it.
"""

from __future__ import annotations

import shutil

import pytest


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"required peer {name!r} is not installed; run scripts/install.sh")
    return path
