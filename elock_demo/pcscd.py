"""pcscd for the demo and the tests: reuse a live one, else start our own.

Debian's pcscd 1.9.9 has no private socket option: it always serves
/run/pcscd/pcscd.comm, and refuses to start while that file exists, even when
the pcscd that made it was killed. So: a socket that answers is a live pcscd
(systemd's socket-activated one on a desktop) that we reuse and never stop; a
socket that does not answer, with no live process behind its pid file, is
stale and removed; then we start ``pcscd --foreground`` (no ``--auto-exit``)
and stop exactly that process afterwards. The vpcd driver must be installed
before pcscd starts: it reads its reader list once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

RUN_DIR = Path("/run/pcscd")
SOCKET = RUN_DIR / "pcscd.comm"
PID_FILE = RUN_DIR / "pcscd.pid"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_READER = "Virtual PCD 00 00"


class PcscdError(Exception):
    """pcscd or the virtual reader is not there and cannot be made to be; says what to do."""


def pcscd_alive() -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(SOCKET))
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_files() -> None:
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        pid = 0
    if pid and _pid_alive(pid):
        raise PcscdError(f"pcscd pid {pid} is alive but its socket does not answer; stop it first")
    SOCKET.unlink(missing_ok=True)
    PID_FILE.unlink(missing_ok=True)


@dataclass
class Pcscd:
    proc: subprocess.Popen[bytes] | None  # None: someone else's pcscd, left alone

    @property
    def ours(self) -> bool:
        return self.proc is not None

    @classmethod
    def start(cls) -> Pcscd:
        exe = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")
        if exe is None:
            raise PcscdError("pcscd is not installed: run scripts/install.sh")
        if not VPCD_DRIVER.exists():
            raise PcscdError("the vpcd reader driver is missing: install vsmartcard-vpcd")
        if pcscd_alive():
            return cls(None)
        if os.geteuid() != 0:
            raise PcscdError("pcscd is not running and only root can start it: run `sudo pcscd`")
        _remove_stale_files()
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        # A file, not a pipe: nobody reads a pipe while pcscd runs, and a full one blocks it.
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen([exe, "--foreground", "--error"], stdout=log, stderr=log)
            cls._wait_alive(proc, log)
        return cls(proc)

    @staticmethod
    def _wait_alive(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        deadline = time.monotonic() + 10
        while not pcscd_alive():
            if proc.poll() is not None:
                log.seek(0)
                raise PcscdError(f"pcscd exited at start: {log.read().decode(errors='replace')}")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(5)
                raise PcscdError("pcscd did not open its socket within 10 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def wait_for_card(
    reader: str = VPCD_READER, timeout: float = 15.0, *, present: bool = True
) -> None:
    """Block until pcscd reports a card present (or gone) in *reader*; it polls the vpcd driver."""
    from smartcard import scard

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            time.sleep(0.1)
            continue
        try:
            hresult, states = scard.SCardGetStatusChange(
                ctx, 500, [(reader, scard.SCARD_STATE_UNAWARE)]
            )
            if (
                hresult == scard.SCARD_S_SUCCESS
                and bool(states[0][1] & scard.SCARD_STATE_PRESENT) == present
            ):
                return
        finally:
            scard.SCardReleaseContext(ctx)
        time.sleep(0.1)
    raise PcscdError(
        f"the card in {reader!r} did not {'appear' if present else 'go'} within {timeout} s"
    )
