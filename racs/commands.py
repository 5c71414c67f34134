"""The typed RACS commands, one frozen dataclass per request line.

Each carries its two-digit command code (``code``) for the response line and
its ``APPEND`` flag; :func:`racs.protocol.parse_command` builds them and
:class:`racs.service.RacsService` executes them with a ``match``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from racs.errors import CommandCode


@dataclass(frozen=True)
class ApduOptions:
    """Options of the APDU command, the names of the seed's APDU algorithm.

    None means "not in the request": what the server then does is its style's
    default (``racs.style``), which is why the parser keeps the difference.
    """

    expect_sw: int | None = None  # CONTINUE=9000: any other final status is an error
    fetch: bytes | None = None  # FETCH=00C00000: header of GET RESPONSE
    more: int | None = None  # MORE=61: SW1 that announces more response bytes


@dataclass(frozen=True)
class Begin:
    code: ClassVar[CommandCode] = CommandCode.BEGIN
    label: str = ""


@dataclass(frozen=True)
class End:
    code: ClassVar[CommandCode] = CommandCode.NONE


@dataclass(frozen=True)
class GetVersion:
    code: ClassVar[CommandCode] = CommandCode.GET_VERSION
    append: bool = False


@dataclass(frozen=True)
class SetVersion:
    code: ClassVar[CommandCode] = CommandCode.SET_VERSION
    version: str
    append: bool = False


@dataclass(frozen=True)
class Echo:
    code: ClassVar[CommandCode] = CommandCode.ECHO
    text: str
    append: bool = False


@dataclass(frozen=True)
class ListSeids:
    code: ClassVar[CommandCode] = CommandCode.LIST
    append: bool = False


@dataclass(frozen=True)
class PowerOn:
    code: ClassVar[CommandCode] = CommandCode.POWERON
    seid: str
    append: bool = False


@dataclass(frozen=True)
class Shutdown:
    code: ClassVar[CommandCode] = CommandCode.SHUTDOWN
    seid: str
    append: bool = False


@dataclass(frozen=True)
class Reset:
    code: ClassVar[CommandCode] = CommandCode.RESET
    seid: str
    warm: bool = False
    append: bool = False


@dataclass(frozen=True)
class Apdu:
    """``APDU SEID HEX [CONTINUE=SW] [FETCH=HDR] [MORE=SW1] [APPEND]``.

    ``apdu`` is None when HEX is missing: the seed's example puts the APDU on
    the line after ``APDU MySEID``, and the session then reads it from there.
    """

    code: ClassVar[CommandCode] = CommandCode.APDU
    seid: str
    apdu: bytes | None
    options: ApduOptions = field(default_factory=ApduOptions)
    append: bool = False


RacsCommand = (
    Begin | End | GetVersion | SetVersion | Echo | ListSeids | PowerOn | Shutdown | Reset | Apdu
)
