"""RACS error types, each carrying the wire code it becomes.

A RACS error line reads ``-CYZ NNN reason``: ``C`` is the error class (below),
``YZ`` the code of the command that failed, ``NNN`` the index of the request
line. Only the session turns an exception into that line, so every layer below
it (parser, access control, card backends, the APDU algorithm) just raises the
class that says what went wrong and a reason a person can act on.

The classes and command codes are those of draft-urien-core-racs as its
author's open implementation (OpenRACS) numbers them; the draft text itself
is summarised in docs/racs.md.

As in h11, "you misused this API" (:class:`LocalProtocolError`) is kept apart
from "the peer sent something wrong" (the :class:`RacsError` family on the
server, :class:`RemoteProtocolError` on the client) and from "the server
refused" as seen by a client (:class:`RemoteRacsError`, and its
:class:`SecureElementBusyError` when another session holds the SE).
"""

from __future__ import annotations

from enum import IntEnum


class CommandCode(IntEnum):
    """The two-digit ``YZ`` part of a response code, one per command."""

    NONE = 0  # a line that names no known command
    BEGIN = 1
    GET_VERSION = 2
    SET_VERSION = 3
    LIST = 4
    RESET = 5
    APDU = 6
    SHUTDOWN = 7
    POWERON = 8
    ECHO = 9


class ErrorClass(IntEnum):
    """The first digit ``C`` of an error code."""

    EXECUTION = 0  # the command ran and failed (e.g. unexpected status word)
    UNKNOWN_COMMAND = 1
    NOT_IMPLEMENTED = 2
    ILLEGAL = 3  # the command cannot be executed now
    BAD_PARAMETER = 4  # unsupported parameter or illegal value
    SYNTAX = 5  # parameter syntax error or parameter missing
    UNAUTHORIZED = 6
    IN_USE = 7  # the SE is locked by another session
    HARDWARE = 8
    SYSTEM = 9


class RacsError(Exception):
    """A refusal that becomes one ``-CYZ NNN reason`` line."""

    error_class: ErrorClass = ErrorClass.SYSTEM

    def __init__(self, reason: str, command: CommandCode | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command = command

    def wire_code(self, command: CommandCode | None = None) -> str:
        """``-CYZ``; an explicit *command* wins over the one given at raise time."""
        cmd = command if command is not None else self.command
        return f"-{int(self.error_class)}{int(cmd or CommandCode.NONE):02d}"


class ExecutionError(RacsError):
    error_class = ErrorClass.EXECUTION


class UnknownCommandError(RacsError):
    error_class = ErrorClass.UNKNOWN_COMMAND


class CommandNotImplementedError(RacsError):
    error_class = ErrorClass.NOT_IMPLEMENTED


class IllegalCommandError(RacsError):
    error_class = ErrorClass.ILLEGAL


class BadParameterError(RacsError):
    error_class = ErrorClass.BAD_PARAMETER


class RacsSyntaxError(RacsError):
    error_class = ErrorClass.SYNTAX


class UnauthorizedError(RacsError):
    error_class = ErrorClass.UNAUTHORIZED


class InUseError(RacsError):
    error_class = ErrorClass.IN_USE


class HardwareError(RacsError):
    error_class = ErrorClass.HARDWARE


class SystemFailureError(RacsError):
    error_class = ErrorClass.SYSTEM


class FatalProtocolError(RacsSyntaxError):
    """The stream cannot be trusted any more (overlong line, oversized block).

    The session answers with an error line and then closes the connection.
    """


class LocalProtocolError(Exception):
    """This process used the sans-I/O session or the client out of order."""


class RemoteRacsError(Exception):
    """A RACS server answered a client's request with an error line."""

    def __init__(self, code: str, index: int, reason: str) -> None:
        super().__init__(f"{code} {index:03d} {reason}")
        self.code = code
        self.index = index
        self.reason = reason

    @property
    def error_class(self) -> ErrorClass:
        return ErrorClass(int(self.code[1]))

    @classmethod
    def from_line(cls, code: str, index: int, reason: str) -> RemoteRacsError:
        """The error for one ``-CYZ NNN reason`` line: the busy kind for class 7."""
        busy = code[1:2] == str(int(ErrorClass.IN_USE))
        return (SecureElementBusyError if busy else cls)(code, index, reason)


class SecureElementBusyError(RemoteRacsError):
    """The SE is locked by another session (``-7YZ``): try again later, nothing failed."""


class RemoteProtocolError(Exception):
    """A RACS server's answer is not RACS (a malformed line, no BEGIN, bad hex, not ASCII).

    Whatever was in flight has an unknown outcome, as after a cut connection.
    """


class TlsVersionError(Exception):
    """The RACS server offers only a TLS version that eLock refuses on TLS#1 (below 1.2)."""

    def __init__(self, server: str, version: str) -> None:
        super().__init__(
            f"RACS server {server} offers only {version}; eLock requires TLS 1.2 or later"
        )
        self.server = server
        self.version = version


class ConfigError(Exception):
    """racs.toml or one of the files it names is wrong; the message says where."""


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to *limit* characters for an error message.

    A message names the bad value, but a 4000-digit number or a megabyte token
    from a hostile file must not become a screenful: the start is enough to find it.
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
