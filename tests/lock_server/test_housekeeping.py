"""The lock's timers outlive a failing round: digests must keep flowing after one bad flush."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from lock_server import server


class FlakyService:
    def __init__(self) -> None:
        self.flushes = 0

    def flush_refusals(self) -> None:
        self.flushes += 1
        if self.flushes == 1:
            raise OSError("audit disk full")  # the first round fails


class CountingWriter:
    def __init__(self) -> None:
        self.prunes = 0

    def request_prune(self) -> None:
        self.prunes += 1


async def test_a_failing_flush_does_not_end_the_timer() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    service, writer = FlakyService(), CountingWriter()
    housekeeping = server._Housekeeping(
        loop, cast(Any, service), cast(Any, writer), aggregate_seconds=0.01
    )
    housekeeping.start()
    try:
        async with asyncio.timeout(5):
            while service.flushes < 3:
                await asyncio.sleep(0.01)
    finally:
        housekeeping.cancel()
    assert writer.prunes == 1
    assert [type(e.get("exception")) for e in errors] == [OSError]  # reported, once


async def test_cancel_stops_both_timers() -> None:
    loop = asyncio.get_running_loop()
    service, writer = FlakyService(), CountingWriter()
    service.flushes = 1  # no failure this time
    housekeeping = server._Housekeeping(
        loop, cast(Any, service), cast(Any, writer), aggregate_seconds=0.01
    )
    housekeeping.start()
    housekeeping.cancel()
    await asyncio.sleep(0.05)
    assert (service.flushes, writer.prunes) == (1, 0)


def test_cancel_before_start_is_harmless() -> None:
    housekeeping = server._Housekeeping(
        cast(Any, None), cast(Any, None), cast(Any, None), aggregate_seconds=1.0
    )
    housekeeping.cancel()
