"""README's first command ends in ``elock demo``: it must tell the whole story and exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]


def test_demo_tells_the_story(tmp_path: Path) -> None:
    require_tool("coap-client-openssl")
    done = subprocess.run([sys.executable, "-m", "elock_demo.cli", "demo", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The story held" in done.stdout
    for step in (
        "Enrol a lock through the API",
        "Personalize a secure element",
        "Open the door with coap-open",
        "confirmed revocation list",
        "key revoked",
    ):
        assert step in done.stdout
