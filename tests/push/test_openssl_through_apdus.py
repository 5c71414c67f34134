"""``openssl s_client`` completes TLS 1.3 with the applet's endpoint, through its APDUs."""

from __future__ import annotations

import subprocess
import time

import pytest

from elock_common import pki
from elock_common.container import KeyContainer
from elock_testkit.push_harness import make_card
from tests.conftest import require_tool
from tests.push.apdu_bridge import ApduBridge

pytestmark = pytest.mark.peer


@pytest.mark.parametrize("groups", ["X25519:P-256", "P-256"], ids=["hello-retry", "direct"])
def test_s_client_provisions_through_the_applet_apdus(push_pki: pki.PkiPaths, groups: str) -> None:
    applet = make_card(push_pki, "card-0007")
    applet.keyring.put(KeyContainer(2, "Garage", "coaps://127.0.0.1/lock", b"g-1", b"x" * 32))
    with ApduBridge(applet) as bridge:
        cmd = [require_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{bridge.port}",
               "-tls1_3", "-groups", groups, "-CAfile", str(push_pki.se_issuer_ca.cert),
               "-verify_return_error", "-cert", str(push_pki.key_server.cert),
               "-key", str(push_pki.key_server.key)]  # fmt: skip
        with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as proc:  # fmt: skip
            assert proc.stdin is not None
            deadline = time.monotonic() + 15
            while 0x9001 not in bridge.status_words:  # the card accepted our certificate
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            answered = len(bridge.status_words)
            proc.stdin.write(bytes([0xA4, 0x00]))  # provisioning LIST, inside TLS#2
            proc.stdin.flush()
            while len(bridge.status_words) == answered:  # the card has answered the LIST
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            out, err = proc.communicate(timeout=15)  # stdin EOF: s_client closes
    assert bridge.error is None
    assert b"Verify return code: 0 (ok)" in out, err
    assert b"TLSv1.3" in out
    assert b"\xb4" in out and b"Garage" in out  # the card's LIST answer came back
    assert bridge.status_words[-1] in (0x9001, 0x9002)
