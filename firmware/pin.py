"""The card PIN: VERIFY with a try counter that a power cut cannot reset.

As Java Card's ``OwnerPIN`` does, the counter is decremented *before* the
comparison and restored only after a match, each with one atomic byte write.
Cutting power after seeing a wrong answer therefore cannot win back a try, and
a cut anywhere leaves the counter at its old value or one lower.

The verified state lives in RAM: a reset, a SELECT, a VERIFY with P1 = FF, or
the start of an Open of a PIN-protected container ends it, so one
verification opens one door.
"""

from __future__ import annotations

import hmac

from elock_common import card_protocol as c
from firmware.apdu import ApduCommand
from firmware.dispatch import Route, route
from firmware.errors import (
    AuthMethodBlockedError,
    IncorrectP1P2Error,
    ReferencedDataNotFoundError,
    SecurityStatusError,
    WrongDataError,
    WrongLengthError,
    WrongPinError,
)
from firmware.store import Store

PIN_MIN, PIN_MAX = 4, 8
MAX_TRIES = 15  # what 63Cx can report
CELL_VALUE, CELL_LIMIT, CELL_TRIES = "pin.value", "pin.limit", "pin.tries"


def check_pin_format(pin: bytes) -> bytes:
    """4 to 8 ASCII digits, returned padded with FF to 8 bytes for a fixed-time compare."""
    if not PIN_MIN <= len(pin) <= PIN_MAX or not all(0x30 <= b <= 0x39 for b in pin):
        raise WrongDataError(f"a PIN is {PIN_MIN} to {PIN_MAX} ASCII digits")
    return pin + b"\xff" * (PIN_MAX - len(pin))


class CardPin:
    """The card-level PIN in the store, and the RAM flag saying it was verified."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.verified = False

    def __repr__(self) -> str:
        return f"CardPin(set={self.is_set}, verified={self.verified})"

    def reset(self) -> None:
        self.verified = False

    @property
    def is_set(self) -> bool:
        return self.store.get(CELL_VALUE) is not None

    @property
    def tries_left(self) -> int:
        raw = self.store.get(CELL_TRIES)
        return raw[0] if raw else 0

    def set(self, pin: bytes, tries: int) -> None:
        """Personalization: a new PIN, its try limit, and a full counter (unblocks)."""
        padded = check_pin_format(pin)
        if not 1 <= tries <= MAX_TRIES:
            raise WrongDataError(f"the try limit is 1..{MAX_TRIES}")
        with self.store.transaction() as tx:
            tx.put(CELL_VALUE, padded)
            tx.put(CELL_LIMIT, bytes([tries]))
            tx.put(CELL_TRIES, bytes([tries]))
        self.verified = False

    def verify(self, pin: bytes) -> None:
        stored = self.store.get(CELL_VALUE)
        limit = self.store.get(CELL_LIMIT)
        if stored is None or limit is None:
            raise ReferencedDataNotFoundError("this card has no PIN")
        tries = self.tries_left
        if tries == 0:
            raise AuthMethodBlockedError("PIN blocked")
        padded = check_pin_format(pin)
        self.verified = False
        self.store.write_byte(CELL_TRIES, tries - 1)  # first: a cut cannot refund the try
        if not hmac.compare_digest(padded, stored):
            raise WrongPinError(tries - 1)
        self.store.write_byte(CELL_TRIES, limit[0])
        self.verified = True

    def consume(self) -> None:
        """Spend the verification on one Open; 6982 when there is none."""
        if not self.verified:
            raise SecurityStatusError("PIN not verified")
        self.verified = False

    def handle_verify(self, cmd: ApduCommand) -> bytes:
        if cmd.p2 != c.P2_PIN_CARD or cmd.p1 not in (0x00, c.P1_VERIFY_RESET):
            raise IncorrectP1P2Error("VERIFY takes P1 00 or FF and P2 81")
        if not self.is_set:
            raise ReferencedDataNotFoundError("this card has no PIN")
        if cmd.le is not None:
            raise WrongLengthError("VERIFY returns no data")
        if cmd.p1 == c.P1_VERIFY_RESET:
            if cmd.data:
                raise WrongLengthError("VERIFY FF takes no data")
            self.verified = False
            return b""
        if not cmd.data:  # ISO 7816-4 11.5.6: no data asks for the state
            if self.verified:
                return b""
            if self.tries_left == 0:
                raise AuthMethodBlockedError("PIN blocked")
            raise WrongPinError(self.tries_left)
        self.verify(cmd.data)
        return b""

    def routes(self) -> list[Route]:
        return [
            route(
                c.CLA_ISO, c.INS_VERIFY, "VERIFY", self.handle_verify,
                (0x63C0, 0x6983, 0x6A80, 0x6A86, 0x6A88),
                "ISO 7816-4 11.5.6; docs/apdu.md#verify",
            ),
        ]  # fmt: skip
