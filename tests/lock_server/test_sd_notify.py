"""systemd's notify protocol as the lock speaks it, against a real AF_UNIX socket."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from lock_server.sd_notify import Notifier


def _receiver(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock


def test_ready_then_pings_from_the_loop(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _receiver(path) as sock:
        sock.setblocking(False)
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
        notifier = Notifier(env)
        assert notifier.watchdog_interval == 0.1
        got: list[str] = []

        async def run() -> None:
            loop = asyncio.get_running_loop()
            notifier.ready()
            # The pings come from this same loop while it keeps running: wait for three.
            async with asyncio.timeout(20):
                while got.count("WATCHDOG=1") < 3:
                    got.append((await loop.sock_recv(sock, 100)).decode())
                notifier.stopping()
                while got[-1] != "STOPPING=1":  # a ping may have left just before
                    got.append((await loop.sock_recv(sock, 100)).decode())

        asyncio.run(run())
    assert got[0] == "READY=1" and got[-1] == "STOPPING=1"
    assert got.count("WATCHDOG=1") >= 3


def test_abstract_socket_and_no_watchdog_for_another_pid() -> None:
    name = f"elock-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
        notifier = Notifier(env)
        assert notifier.watchdog_interval is None  # meant for PID 1, not us
        notifier.ready()
        assert sock.recv(100) == b"READY=1"


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert notifier.watchdog_interval is None
    notifier.ready()  # no socket, no error
    notifier.stopping()
