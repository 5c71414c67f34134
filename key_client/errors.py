"""What can go wrong when a key host opens a door, as types a person can act on.

``coap-open`` maps each family to its own exit status, and the phone app to
its own message: a refused key, an unreachable lock, an answer lost after the
request went out, and a card problem call for different things from the
person at the door.
"""

from __future__ import annotations


class KeyHostError(Exception):
    """Base of everything the key host raises on purpose."""

    exit_status = 1


class RefusedError(KeyHostError):
    """The lock answered and said no; ``reason`` is the lock's own words.

    ``alert`` is the TLS alert description when the lock refused at the DTLS
    handshake (``code`` is then ``"handshake"``), None for a CoAP refusal.
    """

    exit_status = 3

    def __init__(self, code: str, reason: str, *, alert: int | None = None) -> None:
        super().__init__(f"refused by the lock ({code}): {reason}")
        self.code = code
        self.reason = reason
        self.alert = alert


class UnreachableError(KeyHostError):
    """The request never went out: the lock did not answer (or not enough to finish
    the handshake). The door did not open; trying again is safe."""

    exit_status = 4


class OutcomeUnknownError(KeyHostError):
    """The request went out and no answer came: the door may have opened.

    A person who is told "unreachable" here taps again; one who is told this
    looks at the door first. A second tap is harmless all the same: the lock
    counts a repeat within its open time as the same open.
    """

    exit_status = 7
    advice = "the door may be open; check before trying again"


class CardError(KeyHostError):
    """The secure element is missing, blocked, or refused the command."""

    exit_status = 5


class CardMissingError(CardError):
    """No reader, no card, or no card with the eLock applet."""


class PinRequiredError(CardError):
    """This key needs the PIN and none was given."""


class WrongPinError(CardError):
    def __init__(self, tries_left: int) -> None:
        super().__init__(f"wrong PIN: {tries_left} tries left")
        self.tries_left = tries_left


class CardBlockedError(CardError):
    """Too many wrong PINs: the card (or this key) is blocked."""


class NoSuchKeyError(KeyHostError):
    """The card holds no key matching what was asked for."""

    exit_status = 6


class SyncError(KeyHostError):
    """A sync with the key server did not finish: unreachable, refused, cut, or misbehaving.

    Nothing is lost: each container is installed or deleted whole or not at
    all, and the next sync finishes the job.
    """

    exit_status = 8  # 7 is taken: an Open whose outcome is unknown
