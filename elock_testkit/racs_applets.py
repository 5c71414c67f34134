"""A tiny test applet that makes a RACS server walk every branch of the APDU algorithm.

It answers like a T=0 card would: ``6C xx`` when Le is wrong, ``61 xx`` and GET
RESPONSE for long answers; it selects by a partial AID as Java Card does; plus an
echo, a CPLC for card serials and a command that never stops saying ``61 01``
(to test the server's bound).
"""

from __future__ import annotations

import threading

ELOCK_AID = bytes.fromhex("A000000620454C4F434B01")
OTHER_AID = bytes.fromhex("A0000000041010")
SEED_AID = b"JTEST00"  # the AID the seed's example request selects
FIXED = bytes(range(0x30, 0x3A))  # ten bytes that INS 02 returns only for Le = 0A
CPLC = bytes.fromhex("479051674791000000000101112233440000") + bytes(26)

SW_OK = b"\x90\x00"


class TestApplet:
    """``process(apdu) -> response``, the entry point the RACS in-process backend wraps."""

    __test__ = False  # not a pytest class

    def __init__(self, aids: tuple[bytes, ...] = (ELOCK_AID, OTHER_AID, SEED_AID)) -> None:
        self.aids = aids
        self.selected: bytes | None = None
        self.pending = b""
        self.stuck = False
        self.received: list[bytes] = []
        self.resets = 0

    def reset(self) -> None:
        self.selected, self.pending, self.stuck = None, b"", False
        self.resets += 1

    def process(self, apdu: bytes) -> bytes:
        self.received.append(apdu)
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        if ins == 0xA4 and p1 == 0x04:
            aid = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
            # As Java Card: the AID in full, or a leading part of 5 bytes or more.
            found = [a for a in self.aids if a == aid or (len(aid) >= 5 and a.startswith(aid))]
            if found:
                self.selected = found[0]
                return SW_OK
            return b"\x6a\x82"
        if ins == 0x01:  # echo the data field
            return (apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b"") + SW_OK
        if ins == 0x02:  # case 2 with an exact Le
            if len(apdu) != 5 or apdu[4] != len(FIXED):
                return bytes([0x6C, len(FIXED)])
            return FIXED + SW_OK
        if ins == 0x03:  # a long answer, fetched with GET RESPONSE
            self.pending = bytes(i & 0xFF for i in range(p1 << 8 | p2))
            return self._more()
        if ins == 0x04:  # a card stuck in 61xx
            self.stuck = True
            return b"\x61\x01"
        if ins == 0xC0:
            if self.stuck:
                return b"\x00\x61\x01"
            le = apdu[4] if len(apdu) == 5 and apdu[4] else 256
            chunk, self.pending = self.pending[:le], self.pending[le:]
            return chunk + (self._more() if self.pending else SW_OK)
        if cla == 0x80 and ins == 0xCA and apdu[2:4] == b"\x9f\x7f":
            return b"\x9f\x7f" + bytes([len(CPLC)]) + CPLC + SW_OK
        if cla == 0x80 and ins == 0xE6:  # "INSTALL": harmless here, but filters block it
            return SW_OK
        return b"\x6d\x00"

    def _more(self) -> bytes:
        return bytes([0x61, min(len(self.pending), 256) & 0xFF])


def factory() -> TestApplet:
    """For racs.toml: ``applet = "elock_testkit.racs_applets:factory"``."""
    return TestApplet()


class SlowApplet(TestApplet):
    """A card that takes as long as the test wants: ``process`` waits for ``go``."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.go = threading.Event(), threading.Event()

    def process(self, apdu: bytes) -> bytes:
        self.started.set()
        if not self.go.wait(30):  # bounded: a test that forgets to release cannot hang
            return b"\x6f\x00"
        return super().process(apdu)


def slow_factory() -> SlowApplet:
    """For racs.toml: ``applet = "elock_testkit.racs_applets:slow_factory"``."""
    return SlowApplet()
