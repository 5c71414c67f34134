"""The lock must install and run on a Pi without the other parts' dependencies."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = [
    "fastapi",
    "sqlalchemy",
    "smartcard",
    "cryptography",
    "uvicorn",
    "key_provisioner",
    "racs",
    "firmware",
    "key_client",
]


def test_lock_imports_nothing_from_other_parts() -> None:
    code = (
        "import sys, lock_server.server, lock_server.cli;"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
