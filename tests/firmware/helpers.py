"""Shared pieces of the firmware tests: a personalized card and a scripted Open session."""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass

from elock_common import card_protocol as c
from elock_common.container import Flags, KeyContainer
from firmware.apdu import command
from firmware.applet import Applet
from firmware.coap_open import OpenFailed, OpenResult
from firmware.opening import OpenSessionLike, Rng
from firmware.personalization import CELL_TRANSPORT_KEY
from firmware.pin import CardPin
from firmware.store import Eeprom, Store
from firmware.virtual import host

# Distinctive PSKs: any of them in a response would be a leak.
PSKS = [b"PSK~zQ8xLm0Pw!A1", b"PSK~Jr5tNv9Ks@B2", b"PSK~Hy3wDf7Gu#C3"]
PIN = b"1234"
SELECT = command(c.CLA_ISO, c.INS_SELECT, 0x04, 0x00, c.AID)
NOW_MS = 1_750_000_000_000


def container(n: int = 0, **changes: object) -> KeyContainer:
    fields: dict[str, object] = {
        "container_id": 0,
        "label": f"Door {n}",
        "uri": f"coaps://127.0.0.1:{5684 + n}/open",
        "identity": f"IDENT-{n:02d}-abcdefghijklmnop".encode(),
        "psk": PSKS[n % len(PSKS)],
        "not_before": 0,
        "not_after": 0xFFFFFFFF,
        "flags": Flags.NONE,
    }
    fields.update(changes)
    return KeyContainer(**fields)  # type: ignore[arg-type]


class FakeSession:
    """Stands in for OpenSession: datagram b"done" ends the Open, b"fail" fails it."""

    def __init__(self, k: KeyContainer, rng: Rng) -> None:
        self.container = k
        self.out: list[bytes] = []
        self.last: list[bytes] = []
        self.events: deque[object] = deque()
        self.timer: float | None = None
        self.received: list[bytes] = []
        self.timer_fired = 0
        self.progress = 0

    def connect(self, now: float) -> None:
        self._send([b"client-hello"], now)

    def _send(self, datagrams: list[bytes], now: float) -> None:
        self.out += datagrams
        self.last = datagrams
        self.timer = now + 1.0

    def receive_datagram(self, data: bytes, now: float) -> None:
        self.received.append(data)
        if data == b"done":
            self.events.append(OpenResult("2.04", b"opened"))
            self.timer = None
        elif data == b"fail":
            self.events.append(OpenFailed("handshake failed: bad_record_mac", 20))
            self.timer = None
        elif data == b"boom":
            raise RuntimeError("a bug in the session")
        else:
            self._send([b"re:" + data], now)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        self.timer_fired += 1
        self._send(self.last, now)

    def next_event(self) -> object | None:
        return self.events.popleft() if self.events else None


def fake_factory(k: KeyContainer, rng: Rng, initial_timeout: float = 1.0) -> OpenSessionLike:
    return FakeSession(k, rng)


@dataclass
class Card:
    eeprom: Eeprom
    applet: Applet
    transport_key: bytes

    def power_up(self) -> Card:
        """A new applet over the same EEPROM: RAM lost, journal recovered."""
        self.eeprom.cut_at = None
        self.eeprom.tear = False
        self.applet = Applet(Store(self.eeprom), session_factory=fake_factory)
        return self

    def tx(self, apdu: bytes) -> bytes:
        return self.applet.process(apdu)

    def selected(self) -> Card:
        assert self.tx(SELECT) == b"\x90\x00"
        return self

    def install(self, k: KeyContainer) -> int:
        return host.install(self.tx, self.transport_key, k)


def make_card(
    *,
    pin: bytes | None = PIN,
    tries: int = 3,
    containers: int = 0,
    transport_key: bytes | None = None,
) -> Card:
    store = Store(Eeprom())
    transport_key = transport_key or secrets.token_bytes(32)
    with store.transaction() as tx:
        tx.put(CELL_TRANSPORT_KEY, transport_key)
    if pin is not None:
        CardPin(store).set(pin, tries)
    card = Card(store.eeprom, Applet(store, session_factory=fake_factory), transport_key)
    card.selected()
    for n in range(containers):
        card.install(container(n))
    return card
