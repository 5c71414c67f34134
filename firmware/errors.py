"""Status-word exceptions: the applet's only way to say "no".

Every refusal inside the applet raises an ``SwError`` subclass whose class
attribute ``sw`` is the ISO 7816-4 status word; only the dispatcher turns one
into the two trailing response bytes (the h2 ``error_code`` / aiocoap
``Forbidden.code`` habit). Messages are for the log and tests: they name what
was wrong, never the secret or the data that was wrong.
"""

from __future__ import annotations


class SwError(Exception):
    """A command refused with a status word; ``sw`` is a 16-bit integer."""

    sw: int = 0x6F00

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or type(self).__name__)
        self.reason = reason or type(self).__name__

    @property
    def sw_bytes(self) -> bytes:
        return self.sw.to_bytes(2, "big")


class WrongLengthError(SwError):
    sw = 0x6700


class WrongPinError(SwError):
    """63Cx: the PIN did not match and *x* tries remain (x in 0..15)."""

    sw = 0x63C0

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"wrong PIN, {tries_left} tries left")
        self.tries_left = tries_left
        self.sw = 0x63C0 | min(max(tries_left, 0), 0x0F)


class SecurityStatusError(SwError):
    sw = 0x6982


class AuthMethodBlockedError(SwError):
    sw = 0x6983


class ConditionsNotSatisfiedError(SwError):
    sw = 0x6985


class WrongDataError(SwError):
    sw = 0x6A80


class NotFoundError(SwError):
    sw = 0x6A82


class NotEnoughMemoryError(SwError):
    sw = 0x6A84


class IncorrectP1P2Error(SwError):
    sw = 0x6A86


class ReferencedDataNotFoundError(SwError):
    sw = 0x6A88


class InsNotSupportedError(SwError):
    sw = 0x6D00


class ClaNotSupportedError(SwError):
    sw = 0x6E00


class InternalError(SwError):
    sw = 0x6F00


SW_OK = 0x9000
SW_MORE = 0x6100  # 61xx: xx more bytes wait for GET RESPONSE (00 means 256 or more)


def is_wrong_pin(sw: int) -> bool:
    return sw & 0xFFF0 == 0x63C0
