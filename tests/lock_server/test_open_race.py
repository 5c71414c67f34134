"""A request held back by the link lands together with the retry tap's request.

Open #1's request is delayed (its host already said "the door may be open"); the
person taps again; both requests reach the lock within the audit commit. The lock
means this to be one open ("a key that taps again while the door is still open from
its own last open gets 'opened' without a second use", LockService.try_open), and it
is when the two arrive a few ms apart. Arriving together, both pass ``_repeat``
(``_opened_at`` is only set after ``await audit.commit``): two uses charged, two
relay energizations, and a one-time key's retry is *refused* while the relay fires.
"""

from __future__ import annotations

import asyncio
import zoneinfo
from pathlib import Path
from types import SimpleNamespace

from elock_common import LockSecret, mint_key
from lock_server.door import Door
from lock_server.relay import SimulatedRelay
from lock_server.service import LockService
from lock_server.store import LockStore


class SlowSink:
    """The audit writer: the row is committed by another thread, so commit yields."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, bool]] = []

    def audit(self, **row: object) -> None:
        self.rows.append((str(row["reason"]), bool(row["granted"])))

    async def commit(self, **row: object) -> None:
        await asyncio.sleep(0.01)  # an fsync on the lock's SD card
        self.audit(**row)


def _service(tmp_path: Path) -> tuple[LockService, SimulatedRelay, SlowSink]:
    relay = SimulatedRelay(tmp_path)
    sink = SlowSink()
    config = SimpleNamespace(zone=zoneinfo.ZoneInfo("UTC"), name="door")
    service = LockService(
        config=config,  # type: ignore[arg-type]
        store=LockStore(tmp_path / "lock.sqlite3"),
        door=Door(relay, 5.0),
        audit=sink,
    )
    return service, relay, sink


async def test_two_requests_of_one_key_within_the_commit_are_one_open(tmp_path: Path) -> None:
    service, _relay, sink = _service(tmp_path)
    claims, _ = mint_key(LockSecret.generate(), max_uses=3)
    first, second = await asyncio.gather(
        service.try_open(claims, "127.0.0.1:1111"),  # open #1's delayed request
        service.try_open(claims, "127.0.0.1:2222"),  # the retry tap's request
    )
    assert first is None and second is None
    assert relay_ons(tmp_path) == 1, "the relay was energized twice for one open"
    assert [r for r in sink.rows if r[1]] == [("opened", True)], "a second use was charged"


async def test_one_time_key_retry_is_not_refused_while_its_open_fires(tmp_path: Path) -> None:
    service, _relay, _sink = _service(tmp_path)
    claims, _ = mint_key(LockSecret.generate(), max_uses=1)
    first, second = await asyncio.gather(
        service.try_open(claims, "127.0.0.1:1111"),
        service.try_open(claims, "127.0.0.1:2222"),
    )
    assert first is None
    # Sequentially (the retry a few ms later) this is "opened" by _repeat; here the
    # person at the door is told "refused: one-time key already used" as the door buzzes.
    assert second is None, f"refused while the relay fired: {second}"


def relay_ons(data_dir: Path) -> int:
    log = data_dir / "relay.log"
    return [line.split()[1] for line in log.read_text().splitlines()].count("on")
