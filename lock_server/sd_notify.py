"""systemd's notify protocol: READY once listening, WATCHDOG pings from the event loop.

The pings are scheduled on the event loop itself, so a loop that hangs (a
blocking call, a deadlock, SIGSTOP) stops them; systemd then kills the lock
after ``WatchdogSec=`` and ``ExecStopPost=`` releases the relay. Without
``NOTIFY_SOCKET`` (not under systemd, or ``Type=simple``) this does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # systemd writes "@name" for an abstract socket: a leading NUL on the wire.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._interval = _watchdog_interval(env)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WatchdogSec=``), or None without a watchdog."""
        return self._interval

    def ready(self) -> None:
        self._send("READY=1")
        if self._interval is not None:
            self._ping()

    def stopping(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._send("STOPPING=1")

    def _ping(self) -> None:
        self._send("WATCHDOG=1")
        assert self._interval is not None
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._ping)

    def _send(self, message: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode("ascii"), self._address)
        except OSError as exc:
            log.error("cannot notify systemd (%s): %s", message, exc)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process (the watchdog is per service main PID)
    return int(usec) / 1e6 / 2
