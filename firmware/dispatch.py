"""The command table: one handler per (CLA, INS), with the status words it returns.

Declaring every command in one registry (pySim's habit) keeps the applet's
surface visible in one place, makes a duplicate INS a start-up error instead of
a silently shadowed handler, and lets the fuzz test check that every status
word a command returned is one its route declared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from firmware.apdu import ApduCommand

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_NOT_SELECTED = 0x6985
SW_INTERNAL = 0x6F00
SW_CLA = 0x6E00
SW_INS = 0x6D00
SW_WRONG_PIN_FAMILY = 0x63C0  # declares 63C0..63CF
SW_MORE_FAMILY = 0x6100  # declares 6100..61FF
# What the dispatcher itself may answer to any command, whatever its handler.
COMMON_SW = frozenset({SW_OK, SW_MORE_FAMILY, SW_WRONG_LENGTH, SW_INTERNAL})


@dataclass(frozen=True)
class Reply:
    """A success that ends with a status word other than 9000 (TLS-SE's 9001 / 9002).

    A handler returns plain ``bytes`` for a 9000 answer, or a ``Reply`` when its
    route declares another 90xx; a long ``data`` is still chained with 61xx and
    the last GET RESPONSE ends with ``sw``.
    """

    data: bytes
    sw: int = SW_OK

    def __post_init__(self) -> None:
        if self.sw >> 8 != 0x90:
            raise ValueError("a Reply ends with 90xx; refusals raise an SwError")


Handler = Callable[[ApduCommand], bytes | Reply]


@dataclass(frozen=True)
class Route:
    """One command: where it is specified and every status word its handler raises."""

    cla: int
    ins: int
    name: str
    handler: Handler
    status_words: frozenset[int]
    spec: str
    needs_selection: bool = True

    def declares(self, sw: int) -> bool:
        """Whether *sw* is one this command may end with (families 61xx, 63Cx included)."""
        allowed = self.status_words | COMMON_SW
        if self.needs_selection:
            allowed = allowed | {SW_NOT_SELECTED}
        return sw in allowed or (sw & 0xFF00) in allowed or (sw & 0xFFF0) in allowed


def route(
    cla: int,
    ins: int,
    name: str,
    handler: Handler,
    status_words: tuple[int, ...],
    spec: str,
    *,
    needs_selection: bool = True,
) -> Route:
    return Route(cla, ins, name, handler, frozenset(status_words), spec, needs_selection)


class Registry:
    """(CLA, INS) -> Route; refuses a second route for the same pair."""

    def __init__(self) -> None:
        self._routes: dict[tuple[int, int], Route] = {}

    def add(self, entry: Route) -> None:
        key = (entry.cla, entry.ins)
        if key in self._routes:
            other = self._routes[key].name
            raise ValueError(
                f"{entry.name} and {other} both claim CLA {entry.cla:02X} INS {entry.ins:02X}"
            )
        self._routes[key] = entry

    def find(self, cla: int, ins: int) -> Route | None:
        return self._routes.get((cla, ins))

    def knows_class(self, cla: int) -> bool:
        return any(key[0] == cla for key in self._routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes.values())
