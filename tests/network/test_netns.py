"""The test network itself: home reaches the cloud through the NAT, never the reverse."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.netns import (
    CLOUD_IP,
    HOME_IP,
    ROUTER_CLOUD_IP,
    Host,
    NatNetwork,
    namespaces,
    nat_network,
)

pytestmark = pytest.mark.peer

# Accept one TCP connection, answer with the peer's address as the listener saw it.
LISTEN = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(); print('ready', flush=True)\n"
    "c,a=s.accept(); c.sendall(a[0].encode()); c.close()\n"
)
CONNECT = (
    "import socket,sys\n"
    "try:\n"
    "    c=socket.create_connection((sys.argv[1], 7000), timeout=2)\n"
    "    print('connected', c.recv(100).decode())\n"
    "except OSError as e:\n"
    "    print('failed', type(e).__name__)\n"
)


def _listen(net: NatNetwork, host: Host) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        host.exec_args([sys.executable, "-c", LISTEN]), stdout=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    net.processes.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def _connect(host: Host, address: str) -> str:
    return host.run([sys.executable, "-c", CONNECT, address]).strip()


def test_home_reaches_cloud_through_the_masquerade() -> None:
    with nat_network() as net:
        _listen(net, net.cloud)
        # the cloud sees the router's public address, never the lock's LAN address
        assert _connect(net.home, CLOUD_IP) == f"connected {ROUTER_CLOUD_IP}"
        assert f"src={HOME_IP}" in net.nat_entries()


def test_cloud_cannot_open_a_connection_into_home() -> None:
    with nat_network() as net:
        _listen(net, net.home)
        # a route to the LAN exists in the cloud; the NAT's forward policy drops the SYN
        assert _connect(net.cloud, HOME_IP) == "failed TimeoutError"
        # nothing listens on the router's public address, and nothing is forwarded from it
        assert _connect(net.cloud, ROUTER_CLOUD_IP).startswith("failed")
        # ...while the same listener is reachable from inside home
        assert _connect(net.home, HOME_IP) == f"connected {HOME_IP}"


def test_link_cut_and_nat_flush_then_home_dials_again() -> None:
    with nat_network(udp_timeout=2, tcp_timeout=2) as net:
        net.cut_link()
        assert _connect(net.home, CLOUD_IP).startswith("failed")
        net.restore_link()
        net.flush_nat_state()
        _listen(net, net.cloud)
        assert _connect(net.home, CLOUD_IP) == f"connected {ROUTER_CLOUD_IP}"


def test_everything_is_removed_on_error() -> None:
    before = namespaces()
    with pytest.raises(RuntimeError, match="boom"), nat_network() as net:
        net.spawn(net.home, ["sleep", "60"])
        assert len(namespaces()) == len(before) + 3
        raise RuntimeError("boom")
    assert namespaces() == before
