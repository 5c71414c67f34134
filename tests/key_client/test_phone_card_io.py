"""The phone app owns its card channels: each listing and each Open closes the one it
took, whatever happened, and no card call runs on the event loop (an APDU exchange
blocks: through PC/SC, or tens of ms on a real SIM), so the page stays served."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from key_client.channel import KeyInfo, OpenStep
from key_client.errors import CardError
from key_client.phone.app import create_app

SECRET = "s" * 43
HEADERS = {"X-ELock": SECRET, "Host": "127.0.0.1:8480"}


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class RecordingChannel:
    """A card that answers at once and notes where each call ran."""

    def __init__(self, *, pin: bool = False, fail_keys: bool = False) -> None:
        self.calls: list[tuple[str, bool]] = []  # (name, ran on an event loop)
        self.closed = 0
        self._pin = pin
        self._fail_keys = fail_keys

    def _note(self, name: str) -> None:
        self.calls.append((name, _on_loop()))

    def keys(self) -> list[KeyInfo]:
        self._note("keys")
        if self._fail_keys:
            raise CardError("the card was pulled out")
        # A port nothing listens on: the Open below ends before any datagram is sent.
        return [KeyInfo(1, "Front door", "coaps://127.0.0.1:9/lock", pin_required=self._pin)]

    def verify_pin(self, pin: str) -> None:
        self._note("verify_pin")

    def begin(self, container_id: int, now: float, *, retransmit: float | None = None) -> OpenStep:
        self._note("begin")
        return OpenStep(code="2.04", payload=b"opened")

    def feed(self, datagrams: list[bytes], now: float) -> OpenStep:
        raise AssertionError("no datagram was sent")

    def timeout(self, now: float) -> OpenStep:
        raise AssertionError("no timer was set")

    def abort(self) -> None:
        self._note("abort")

    def close(self) -> None:
        self._note("close")
        self.closed += 1


@pytest.fixture
def channels() -> list[RecordingChannel]:
    return []


def _app(channels: list[RecordingChannel], **card: bool) -> TestClient:
    def connect() -> RecordingChannel:
        assert not _on_loop(), "connect() ran on the event loop"
        channels.append(RecordingChannel(**card))
        return channels[-1]

    return TestClient(create_app(connect, session=SECRET))


def test_a_listing_closes_its_channel_and_reads_the_card_off_the_loop(
    channels: list[RecordingChannel],
) -> None:
    answer = _app(channels).get("/api/keys", headers=HEADERS)
    assert answer.status_code == 200 and answer.json()[0]["label"] == "Front door"
    (channel,) = channels
    assert channel.closed == 1
    assert [on_loop for _, on_loop in channel.calls] == [False, False]


def test_a_failed_listing_closes_its_channel_too(channels: list[RecordingChannel]) -> None:
    answer = _app(channels, fail_keys=True).get("/api/keys", headers=HEADERS)
    assert answer.status_code == 503 and answer.json()["status"] == "card"
    assert channels[0].closed == 1


def test_an_open_closes_its_channel_and_talks_to_the_card_off_the_loop(
    channels: list[RecordingChannel],
) -> None:
    answer = _app(channels, pin=True).post(
        "/api/open", headers=HEADERS, json={"id": 1, "pin": "1234"}
    )
    assert answer.json()["status"] == "opened", answer.json()
    (channel,) = channels
    assert [name for name, _ in channel.calls] == ["keys", "verify_pin", "begin", "close"]
    assert not any(on_loop for _, on_loop in channel.calls), channel.calls


def test_a_refused_open_closes_its_channel(channels: list[RecordingChannel]) -> None:
    answer = _app(channels, pin=True).post("/api/open", headers=HEADERS, json={"id": 1})
    assert answer.json()["status"] == "pin"
    assert channels[0].closed == 1
    answer = _app(channels).post("/api/open", headers=HEADERS, json={"id": 7})
    assert answer.json()["status"] != "opened"
    assert channels[1].closed == 1
