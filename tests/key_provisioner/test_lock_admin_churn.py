"""The key server's lock client survives timeouts and cancellations (a real lock, tinydtls).

aiocoap raised InvalidStateError inside DTLSSocket's read callback when an
answer came after our timeout had cancelled its future; tinydtls was left
half-way and the process later aborted ("double free or corruption"), which
in the key server means the whole API going down during a lock visit.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from elock_testkit.liveserver import env
from elock_testkit.lockproc import LockProcess, coap

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_cancelled_and_timed_out_visits_never_break_the_client(lock: LockProcess) -> None:
    secret = lock.directory / "lock.secret"
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-m", "tests.key_provisioner.admin_churn",
         str(lock.port), str(secret), "150"],
        capture_output=True, text=True, env=env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "churn done" in done.stdout
    for sign in ("SystemError", "InvalidStateError", "never retrieved", "Fatal Python error"):
        assert sign not in done.stderr, done.stderr[-3000:]
    # The lock took all of it too, and still opens.
    assert lock.proc is not None and lock.proc.poll() is None
    assert "opened" in coap("coap-client-openssl", "post", lock.mint(), lock.uri)
