"""What the sans-I/O session gives its caller: limits in, events out.

Kept apart from :mod:`racs.session` so that the server, the tests and any
other driver (a future HTTP interface of the draft) import these small types
without the state machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from racs.commands import RacsCommand


@dataclass(frozen=True)
class Limits:
    max_line: int = 16384  # bytes; a short APDU needs 522 hex digits, extended ones more
    max_block_lines: int = 999  # the response index has three digits
    max_block_bytes: int = 1 << 20
    max_response_bytes: int = 1 << 20
    max_idle_errors: int = 16  # consecutive bad lines outside a block before we hang up


@dataclass(frozen=True)
class CommandRequest:
    index: int
    command: RacsCommand


@dataclass(frozen=True)
class NeedData:
    pass


@dataclass(frozen=True)
class Closed:
    reason: str


Event = CommandRequest | NeedData | Closed
