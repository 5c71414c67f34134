"""An Open cancelled while the card is busy: ``abort`` waits for the exchange in flight,
so two threads never talk to the card at once (a PC/SC handle, a card file)."""

from __future__ import annotations

import asyncio
import threading

from key_client.carrier import open_door
from key_client.channel import KeyInfo, OpenStep


class SlowCard:
    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.events: list[str] = []

    def begin(self, container_id: int, now: float, *, retransmit: float | None = None) -> OpenStep:
        self.events.append("begin")
        self.inside.set()
        assert self.release.wait(5), "never released"
        self.events.append("begin done")
        return OpenStep(datagrams=[], timer=now + 60)

    def abort(self) -> None:
        self.events.append("abort")


async def test_abort_waits_for_the_card_call_in_flight() -> None:
    card = SlowCard()
    key = KeyInfo(1, "Front door", "coaps://127.0.0.1:9/lock")
    opening = asyncio.create_task(open_door(card, key, timeout=30))  # type: ignore[arg-type]
    assert await asyncio.to_thread(card.inside.wait, 5)
    opening.cancel()
    await asyncio.sleep(0.05)  # a cancelled Open must not abort yet: the card is busy
    assert card.events == ["begin"]
    card.release.set()
    try:
        await opening
    except asyncio.CancelledError:
        pass
    assert card.events == ["begin", "begin done", "abort"]
