"""The shipped elock-lock.service, run by a supervisor that does what systemd does.

There is no systemd PID 1 on the test machines, so this supervisor reads the unit
file and keeps its promises the way systemd would: ``ExecStart`` with a
``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``; READY=1 awaited
(``Type=notify``); no WATCHDOG=1 for ``WatchdogSec`` means ``SIGABRT``, then
``SIGKILL`` after ``TimeoutStopSec``; ``ExecStopPost`` after every exit. The
lock it starts is the real one, with the simulated relay.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from elock_testkit.lockproc import LockProcess, _env, coap
from tests.conftest import require_tool

# Real programs as processes (elock-lock, coap-open, libcoap...): not in the fast run.
pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "elock-lock.service"
INSTALLED_EXE = "/opt/elock/venv/bin/elock-lock"
INSTALLED_CONFIG = "/etc/elock/lock.toml"


def _service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def _seconds(value: str) -> float:
    return float(value[:-1]) if value.endswith("s") else float(value)


class Supervisor:
    """One service instance, as systemd would run it."""

    def __init__(self, config: Path, runtime: Path) -> None:
        service = _service()
        assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
        self.watchdog = _seconds(service["WatchdogSec"])
        self.stop_timeout = _seconds(service.get("TimeoutStopSec", "90"))
        self.exec_start = self._command(service["ExecStart"], config)
        self.exec_stop_post = self._command(service["ExecStopPost"], config)
        self.notify_path = runtime / "notify"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = runtime / "lock.log"

    @staticmethod
    def _command(line: str, config: Path) -> list[str]:
        words = shlex.split(line.lstrip("-@:+!"))
        assert words[0] == INSTALLED_EXE, line
        rest = [str(config) if w == INSTALLED_CONFIG else w for w in words[1:]]
        return [sys.executable, "-m", "lock_server.cli", *rest]

    def start(self) -> subprocess.Popen[bytes]:
        env = {**_env(), "NOTIFY_SOCKET": str(self.notify_path),
               "WATCHDOG_USEC": str(int(self.watchdog * 1e6))}  # fmt: skip
        # systemd sets WATCHDOG_PID to the main PID before exec; `exec` keeps the sh's PID.
        script = 'WATCHDOG_PID=$$ exec "$@"'
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["sh", "-c", f"export WATCHDOG_PID; {script}", "sh", *self.exec_start],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        assert self.wait_message("READY=1", 20), self.log.read_text()
        return self.proc

    def wait_message(self, wanted: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.notify.settimeout(left)
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                return False
            if wanted in message.split("\n"):
                return True
        return False

    def watch(self, limit: float) -> str:
        """Serve as the watchdog for up to ``limit`` s; return how the service ended."""
        deadline = time.monotonic() + limit
        assert self.proc is not None
        while time.monotonic() < deadline:
            if not self.wait_message("WATCHDOG=1", self.watchdog):
                self.proc.send_signal(signal.SIGABRT)  # WatchdogSignal=
                try:
                    self.proc.wait(self.stop_timeout)  # TimeoutAbortSec= = TimeoutStopSec=
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
                self.stop_post()
                return "watchdog"
            if self.proc.poll() is not None:
                self.stop_post()
                return "exited"
        return "healthy"

    def stop_post(self) -> None:
        done = subprocess.run(self.exec_stop_post, env=_env(), capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.notify.close()


@pytest.fixture
def unit(tmp_path: Path) -> Iterator[tuple[Supervisor, LockProcess]]:
    require_tool("coap-client-openssl")
    lock = LockProcess.create(tmp_path / "lock", open_seconds=60)
    supervisor = Supervisor(lock.config, tmp_path)
    try:
        yield supervisor, lock
    finally:
        supervisor.close()


def _opened(unit: tuple[Supervisor, LockProcess]) -> subprocess.Popen[bytes]:
    """Start the unit and open the door through it: the relay is on; the unit's main process."""
    supervisor, lock = unit
    main = supervisor.start()
    assert "opened" in coap("coap-client-openssl", "post", lock.mint(), lock.uri)
    assert lock.relay_on()
    return main


def test_kill_9_with_the_relay_energized_leaves_it_off(
    unit: tuple[Supervisor, LockProcess],
) -> None:
    supervisor, lock = unit
    main = _opened(unit)
    main.send_signal(signal.SIGKILL)
    main.wait(10)
    assert lock.relay_on()  # nothing in the dead process can release it: the unit must
    assert supervisor.watch(5) == "exited"
    assert not lock.relay_on() and lock.relay_events()[-1] == "off"


def test_a_frozen_loop_stops_the_pings_and_the_watchdog_releases_the_relay(
    unit: tuple[Supervisor, LockProcess],
) -> None:
    supervisor, lock = unit
    main = _opened(unit)
    assert supervisor.watch(supervisor.watchdog * 0.8) == "healthy"  # pings while it runs
    os.kill(main.pid, signal.SIGSTOP)  # the loop hangs
    began = time.monotonic()
    assert supervisor.watch(supervisor.watchdog + supervisor.stop_timeout + 10) == "watchdog"
    assert time.monotonic() - began <= supervisor.watchdog + supervisor.stop_timeout + 5
    assert main.returncode == -signal.SIGKILL
    assert not lock.relay_on() and lock.relay_events()[-1] == "off"


def test_a_clean_stop_still_says_stopping(unit: tuple[Supervisor, LockProcess]) -> None:
    supervisor, lock = unit
    main = supervisor.start()
    main.send_signal(signal.SIGTERM)
    assert supervisor.wait_message("STOPPING=1", 10)
    main.wait(10)
    supervisor.stop_post()
    assert not lock.relay_on()
