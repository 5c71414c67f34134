"""Hosts in network namespaces: a "home" LAN behind an nftables NAT, and a "cloud".

Reachability claims (the lock dials out, nothing dials in) must be proved on a
network that behaves like the field, not on loopback, where everything reaches
everything. This module builds, per test run::

    home (192.168.77.2/24) ──veth── router ──veth── cloud (203.0.113.10/24)
                                    192.168.77.1 │ 203.0.113.1
                                    nftables: masquerade home → cloud,
                                    drop every new connection cloud → home

The cloud even gets a route to the home LAN (as a hostile upstream might have),
so "the cloud cannot connect in" is the NAT's doing, not a missing route. The
router's conntrack timeouts are set short and configurable (``udp_timeout``,
``tcp_timeout``), so a test can cut the link for longer than the NAT keeps a
mapping, then flush the NAT's state (``conntrack -F``) as a reboot of a home
router would.

Every name carries a per-run suffix, so two runs never collide; ``nat_network``
tears everything down on every exit path (processes first: a namespace with a
live process in it outlives ``ip netns del``). The helpers need root, iproute2,
nftables and conntrack (scripts/system-packages/network.txt); CI runs them as
root, each shard of the suite in network namespaces of its own (elock_testkit/suite.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.conftest import require_tool

HOME_IP = "192.168.77.2"
ROUTER_HOME_IP = "192.168.77.1"
ROUTER_CLOUD_IP = "203.0.113.1"
CLOUD_IP = "203.0.113.10"

NAT_RULES = """
table inet elock_nat {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan" oifname "wan" accept
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
"""


def run(args: Sequence[str], *, check: bool = True, timeout: float = 20) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    """One namespace; ``exec_args`` prefixes a command so that it runs there."""

    name: str
    address: str

    def exec_args(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, args: Sequence[str], *, check: bool = True, timeout: float = 20) -> str:
        return run(self.exec_args(args), check=check, timeout=timeout)


@dataclass
class NatNetwork:
    """The three namespaces and the processes a test started in them."""

    suffix: str
    home: Host
    router: Host
    cloud: Host
    udp_timeout: int
    tcp_timeout: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self,
        host: Host,
        args: Sequence[str],
        *,
        log: IO[bytes] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in ``host``; it is killed (with its group) at teardown."""
        proc = subprocess.Popen(
            host.exec_args(args),
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def cut_link(self) -> None:
        """Pull the home router's uplink: nothing passes between home and cloud."""
        self.router.run(["ip", "link", "set", "wan", "down"])

    def restore_link(self) -> None:
        self.router.run(["ip", "link", "set", "wan", "up"])
        self.router.run(["ip", "route", "replace", "default", "via", CLOUD_IP])

    def flush_nat_state(self) -> None:
        """Forget every NAT mapping, as a router that rebooted would."""
        self.router.run([require_tool("conntrack"), "-F"], check=False)

    def nat_entries(self) -> str:
        return self.router.run([require_tool("conntrack"), "-L"], check=False)

    def stop_processes(self) -> None:
        for proc in self.processes:
            stop_group(proc)
        self.processes.clear()


CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def inside(host: Host) -> Iterator[None]:
    """Run this thread's new sockets in ``host`` (setns), and come back on any exit.

    For a test's own client calls (an admin in the cloud calling the API); processes
    still go through ``Host.exec_args``.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net", "rb") as home_ns:
        with open(f"/run/netns/{host.name}", "rb") as target:
            if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {host.name} failed")
        try:
            yield
        finally:
            if libc.setns(home_ns.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")


def stop_group(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            stream.close()
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def _require_root_tools() -> None:
    for tool in ("ip", "nft", "conntrack"):
        require_tool(tool)
    if os.geteuid() != 0:
        raise RuntimeError("network namespaces need root: run the tests as root, as CI does")


def _build(net: NatNetwork) -> None:
    home, router, cloud = net.home, net.router, net.cloud
    for host in (home, router, cloud):
        run(["ip", "netns", "add", host.name])
        host.run(["ip", "link", "set", "lo", "up"])
    # veth ends are created straight into their namespaces: short fixed names there,
    # nothing ever appears in the namespace the test runs in.
    run(["ip", "link", "add", "eth0", "netns", home.name, "type", "veth",
         "peer", "name", "lan", "netns", router.name])  # fmt: skip
    run(["ip", "link", "add", "eth0", "netns", cloud.name, "type", "veth",
         "peer", "name", "wan", "netns", router.name])  # fmt: skip
    home.run(["ip", "addr", "add", f"{HOME_IP}/24", "dev", "eth0"])
    home.run(["ip", "link", "set", "eth0", "up"])
    home.run(["ip", "route", "add", "default", "via", ROUTER_HOME_IP])
    cloud.run(["ip", "addr", "add", f"{CLOUD_IP}/24", "dev", "eth0"])
    cloud.run(["ip", "link", "set", "eth0", "up"])
    # a hostile upstream that routes the home LAN back to the router: only the NAT stops it
    cloud.run(["ip", "route", "add", "192.168.77.0/24", "via", ROUTER_CLOUD_IP])
    router.run(["ip", "addr", "add", f"{ROUTER_HOME_IP}/24", "dev", "lan"])
    router.run(["ip", "addr", "add", f"{ROUTER_CLOUD_IP}/24", "dev", "wan"])
    router.run(["ip", "link", "set", "lan", "up"])
    router.run(["ip", "link", "set", "wan", "up"])
    router.run(["ip", "route", "add", "default", "via", CLOUD_IP])
    router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    _load_rules(router)
    for key, value in (
        ("net.netfilter.nf_conntrack_udp_timeout", net.udp_timeout),
        ("net.netfilter.nf_conntrack_udp_timeout_stream", net.udp_timeout),
        ("net.netfilter.nf_conntrack_tcp_timeout_established", net.tcp_timeout),
    ):
        router.run(["sysctl", "-qw", f"{key}={value}"])


def _load_rules(router: Host) -> None:
    done = subprocess.run(
        router.exec_args(["nft", "-f", "-"]),
        input=NAT_RULES,
        capture_output=True,
        text=True,
        timeout=20,
    )
    if done.returncode != 0:
        raise RuntimeError(f"nft rules refused: {done.stderr.strip()}")


def _teardown(net: NatNetwork) -> None:
    net.stop_processes()
    for host in (net.home, net.router, net.cloud):
        # the namespace's own processes (say, one a test spawned without ``spawn``)
        pids = run(["ip", "netns", "pids", host.name], check=False).split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", host.name], check=False)


@contextlib.contextmanager
def nat_network(*, udp_timeout: int = 30, tcp_timeout: int = 30) -> Iterator[NatNetwork]:
    """Build home, router and cloud; remove them (and what runs in them) on any exit."""
    _require_root_tools()
    suffix = f"{os.getpid() % 100000}-{secrets.token_hex(3)}"
    net = NatNetwork(
        suffix,
        Host(f"elock-home-{suffix}", HOME_IP),
        Host(f"elock-router-{suffix}", ROUTER_HOME_IP),
        Host(f"elock-cloud-{suffix}", CLOUD_IP),
        udp_timeout,
        tcp_timeout,
    )
    try:
        _build(net)
        yield net
    finally:
        _teardown(net)


def namespaces() -> list[str]:
    """The namespaces that exist now (for tests that check teardown)."""
    netns_dir = Path("/run/netns")
    return sorted(p.name for p in netns_dir.iterdir()) if netns_dir.exists() else []
