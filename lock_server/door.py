"""The door: a relay energized for a while after each granted open.

The open time is a timer on the event loop; a second open while the door is
open extends it. Watchers (the Observe resource) hear every change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lock_server.relay import Relay


class Door:
    def __init__(self, relay: Relay, open_seconds: float) -> None:
        self._relay = relay
        self._open_seconds = open_seconds
        self._relock: asyncio.TimerHandle | None = None
        self._watchers: list[Callable[[], None]] = []
        relay.release()  # fail-secure: whatever the last process left, start locked

    @property
    def is_open(self) -> bool:
        return self._relay.energized

    @property
    def open_seconds(self) -> float:
        return self._open_seconds

    def watch(self, callback: Callable[[], None]) -> None:
        self._watchers.append(callback)

    def open(self) -> None:
        was_open = self.is_open
        if self._relock is not None:
            self._relock.cancel()
        self._relay.energize()
        self._relock = asyncio.get_running_loop().call_later(self._open_seconds, self._close)
        if not was_open:
            self._notify()

    def _close(self) -> None:
        self._relock = None
        self._relay.release()
        self._notify()

    def shutdown(self) -> None:
        if self._relock is not None:
            self._relock.cancel()
            self._relock = None
        self._relay.close()

    def _notify(self) -> None:
        for callback in self._watchers:
            callback()
