"""The strike relay: a real GPIO pin on a Pi, or a simulated one elsewhere.

Fail-secure is the rule every backend keeps: the relay is released when the
backend is created (so a restart after a crash relocks), after each open, and
when the backend is closed. After a ``kill -9`` or a crash, the systemd unit's
``ExecStopPost=elock-lock relay off`` releases it from outside the dead process.
The strike itself must still be a fail-secure model (unpowered = locked),
because no software can release a pin after a power cut or a kernel panic;
see docs/wiring.md.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Protocol

from lock_server.config import RelayConfig
from lock_server.errors import RelayError


class Relay(Protocol):
    @property
    def energized(self) -> bool: ...

    def energize(self) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class SimulatedRelay:
    """A relay whose state lives in files, so tests and the demo can watch it.

    ``relay.state`` holds ``1`` or ``0``; ``relay.log`` gets one line per
    change (``<unix time> on|off``), flushed to disk before the call returns.
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = data_dir / "relay.state"
        self.log_path = data_dir / "relay.log"
        self._energized = False
        self._write(False)

    @property
    def energized(self) -> bool:
        return self._energized

    def energize(self) -> None:
        self._write(True)

    def release(self) -> None:
        self._write(False)

    def close(self) -> None:
        self._write(False)

    def _write(self, on: bool) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write("1\n" if on else "0\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)
        with open(self.log_path, "a", encoding="ascii") as log:
            log.write(f"{time.time():.6f} {'on' if on else 'off'}\n")
            log.flush()
            os.fsync(log.fileno())
        self._energized = on


def read_simulated_state(data_dir: Path) -> bool:
    """What a simulated relay in ``data_dir`` shows now (for tests, status, the demo)."""
    try:
        return (data_dir / "relay.state").read_text(encoding="ascii").strip() == "1"
    except FileNotFoundError:
        return False


class GpioRelay:
    """RPi.GPIO on a Raspberry Pi; imported lazily so other machines never need it."""

    def __init__(self, config: RelayConfig) -> None:
        try:
            import RPi.GPIO as gpio  # noqa: N811
        except ImportError as exc:
            raise RelayError(
                "relay.backend = 'rpi' needs RPi.GPIO (pip install 'elock[pi]')"
            ) from exc
        self._gpio: Any = gpio
        self._pin = config.pin
        self._on = gpio.HIGH if config.active_high else gpio.LOW
        self._off = gpio.LOW if config.active_high else gpio.HIGH
        gpio.setmode(gpio.BCM)
        gpio.setwarnings(False)
        gpio.setup(self._pin, gpio.OUT, initial=self._off)
        self._energized = False

    @property
    def energized(self) -> bool:
        return self._energized

    def energize(self) -> None:
        self._gpio.output(self._pin, self._on)
        self._energized = True

    def release(self) -> None:
        self._gpio.output(self._pin, self._off)
        self._energized = False

    def close(self) -> None:
        self.release()
        self._gpio.cleanup(self._pin)


def make_relay(config: RelayConfig, data_dir: Path) -> Relay:
    if config.backend == "rpi":
        return GpioRelay(config)
    return SimulatedRelay(data_dir)
