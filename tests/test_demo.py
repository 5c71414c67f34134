"""README's first command ends in ``elock demo``: it must tell the whole story and exit 0.

The demo starts pcscd, a virtual card, a RACS server, the key server and a
lock; it uses pcscd's vpcd port, so it runs alone like the other pcscd tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
STEPS = (
    "Make the PKI with elock pki init",
    "Enrol a lock through the API",
    "Personalize a secure element and put it behind pcscd",
    "the key server pushes it into the card (RACS + TLS#2)",
    "TLS#2 APDUs through RACS",
    "holds no byte of the PSK, identity or label in clear",
    "Open the door with coap-open",
    "confirmed revocation list",
    "deleted the container from the card",
    "4.01 key revoked",
    "delivery 'host' (no RACS server)",
    "push 'pending' until the phone syncs",
    "1 key(s) added, 0 removed",
    "with the key the phone took by itself",
    "0 key(s) added, 1 removed; push 'removed'",
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    for tool in ("coap-client-openssl", "pcscd"):
        require_tool(tool)
    return subprocess.run([sys.executable, "-m", "elock_demo.cli", "demo", *args],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_demo_tells_the_story_and_stops_everything(tmp_path: Path) -> None:
    done = demo("--dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The story held" in done.stdout
    for step in STEPS:
        assert step in done.stdout, step
    assert all(
        re.search(r"\(\d+ ms\)$", line)
        for line in done.stdout.splitlines()
        if line.startswith("    ")
    )  # fmt: skip every step says how long it took
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout == "", leftovers.stdout


def test_keep_leaves_a_working_system_and_says_how_to_use_it(tmp_path: Path) -> None:
    done = demo("--keep", "--dir", str(tmp_path))
    pids = [int(p) for p in re.findall(r"Stop all:\s+kill ([\d ]+)", done.stdout)[0].split()]
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert all(alive(pid) for pid in pids)
        docs = re.findall(r"API docs:\s+(\S+)", done.stdout)[0]
        with urllib.request.urlopen(docs, timeout=10) as page:
            assert b"swagger" in page.read().lower()
        token = (tmp_path / "keyserver" / "admin.token").read_text().strip()
        request = urllib.request.Request(
            docs.removesuffix("/docs") + "/keys", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            keys = json.loads(answer.read())["items"]
        assert {k["label"]: k["push"]["state"] for k in keys} == {
            "Front door": "removed",
            "Back door": "installed",
            "Phone door": "removed",
        }
        assert "elock-phone --reader 'Virtual PCD 00 00'" in done.stdout
        listed = subprocess.run(
            [sys.executable, "-m", "key_client.cli", "--list", "--json"],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
        )  # fmt: skip
        assert [k["label"] for k in json.loads(listed.stdout)] == ["Back door"], listed
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not any(alive(p) for p in pids)
