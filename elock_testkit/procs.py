"""Stopping the processes a test or benchmark started: politely, then for sure, always waited."""

from __future__ import annotations

import subprocess
from typing import Any


def terminate(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if it outlives ``timeout``; reaped either way (no zombie, and no
    "subprocess is still running" warning when the Popen object goes)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
