"""``openssl s_client`` against the sans-I/O server, through a small TCP bridge.

The second interop proof, with OpenSSL's own command-line client: handshake
(with and without HelloRetryRequest), data both ways, a client-requested
KeyUpdate, and the refusals a card must make. A missing ``openssl`` fails.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

from elock_testkit.waiting import wait_for
from firmware.tls13 import (
    AlertDescription,
    ApplicationData,
    ConnectionClosed,
    HandshakeCompleted,
    Tls13Server,
    TlsEvent,
)
from tests.conftest import require_tool
from tests.firmware.tcp_bridge import TcpBridge
from tests.firmware.tls_fixtures import CardPki

pytestmark = pytest.mark.peer


def greet_and_echo(server: Tls13Server, event: TlsEvent) -> None:
    if isinstance(event, HandshakeCompleted):
        server.send_application_data(b"card says hi\n")
    elif isinstance(event, ApplicationData):
        server.send_application_data(b"echo:" + event.data)


def s_client(card_pki: CardPki, port: int, *extra: str, cert: bool = True) -> list[str]:
    paths = card_pki.paths
    cmd = [require_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3"]
    cmd += ["-CAfile", str(paths.se_issuer_ca.cert), "-verify_return_error"]
    if cert:
        cmd += ["-cert", str(paths.key_server.cert), "-key", str(paths.key_server.key)]
    return [*cmd, *extra]


@pytest.mark.parametrize("groups", ["X25519:P-256", "P-256"], ids=["hello-retry", "direct"])
def test_s_client_handshake_data_and_key_update(card_pki: CardPki, groups: str) -> None:
    stderr_lines: list[bytes] = []
    with (
        TcpBridge(card_pki.server, greet_and_echo) as bridge,
        subprocess.Popen(
            s_client(card_pki, bridge.port, "-groups", groups),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc,
    ):
        assert proc.stdin and proc.stdout and proc.stderr
        reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
        reader.start()

        def data_events() -> int:
            return sum(isinstance(e, ApplicationData) for e in bridge.events)

        wait_for(lambda: any(isinstance(e, HandshakeCompleted) for e in bridge.events))
        # One line per write: s_client reads "K" as a command only when alone.
        for line in (b"hello\n", b"K\n", b"after key update\n"):
            before = data_events()
            proc.stdin.write(line)
            proc.stdin.flush()
            if line == b"K\n":  # s_client says KEYUPDATE once it has sent the message
                wait_for(lambda: b"KEYUPDATE\n" in stderr_lines)
            else:
                wait_for(lambda before=before: data_events() > before)  # type: ignore[misc]
        proc.stdin.close()  # EOF: s_client sends close_notify and exits
        proc.wait(timeout=30)
        reader.join(timeout=10)
        out = proc.stdout.read()  # a few KiB: fits the pipe, s_client never blocked on it
    stdout, stderr = out.decode(), b"".join(stderr_lines).decode()
    assert proc.returncode == 0, stderr
    assert "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256" in stdout
    assert "Verify return code: 0 (ok)" in stdout
    assert "Peer signature type: ECDSA" in stdout
    assert "Server Temp Key: ECDH, prime256v1" in stdout
    assert "card says hi" in stdout and "echo:hello" in stdout
    assert "KEYUPDATE" in stderr
    assert "echo:after key update" in stdout  # read under our updated key
    completed = bridge.events[0]
    assert isinstance(completed, HandshakeCompleted)
    assert completed.retried is (groups != "P-256")
    received = b"".join(e.data for e in bridge.events if isinstance(e, ApplicationData))
    assert received == b"hello\nafter key update\n"
    assert bridge.events[-1] == ConnectionClosed(
        AlertDescription.CLOSE_NOTIFY, "closed by peer", by_peer=True
    )
    assert bridge.error is None


@pytest.mark.parametrize(
    ("extra", "cert", "alert", "client_says"),
    [
        ((), False, AlertDescription.CERTIFICATE_REQUIRED, "certificate required"),
        (("-ciphersuites", "TLS_AES_256_GCM_SHA384"), True, AlertDescription.HANDSHAKE_FAILURE,
         "handshake failure"),
        (("-groups", "X25519"), True, AlertDescription.HANDSHAKE_FAILURE, "handshake failure"),
        (("-sigalgs", "ed25519:rsa_pss_rsae_sha256"), True, AlertDescription.HANDSHAKE_FAILURE,
         "handshake failure"),
    ],
    ids=["no-client-cert", "other-cipher-suite", "no-p256", "no-ecdsa-p256"],
)  # fmt: skip
def test_s_client_refusals(
    card_pki: CardPki, extra: tuple[str, ...], cert: bool, alert: AlertDescription, client_says: str
) -> None:
    with TcpBridge(card_pki.server, greet_and_echo) as bridge:
        proc = subprocess.Popen(
            s_client(card_pki, bridge.port, *extra, cert=cert),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Keep stdin open until the card has refused: on EOF s_client would quit
        # before reading an alert that comes after its own Finished (TLS 1.3).
        wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in bridge.events))
        out, err = proc.communicate(timeout=30)
    closed = bridge.events[-1]
    assert isinstance(closed, ConnectionClosed)
    assert closed.alert is alert and not closed.by_peer
    assert client_says in err.decode() + out.decode()
    assert not any(isinstance(e, HandshakeCompleted) for e in bridge.events)
