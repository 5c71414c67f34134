"""RACS wire format without I/O: request lines in, typed commands out, response lines back.

A request is a block of text lines (draft-urien-core-racs; seed slide "RACS
Requests and Responses")::

    BEGIN [label]
    COMMAND [arguments] [APPEND]
    ...
    END

and the answer is a block of the same shape whose lines read
``+0YZ NNN text`` (success) or ``-CYZ NNN reason`` (error), see
:mod:`racs.errors`. Everything here is pure functions and small dataclasses, so
the parser can be fuzzed and the server and the client share one grammar.
Reading is bounded: :class:`LineReader` refuses a line longer than its limit
before it has buffered more than that, because a peer that never sends a
newline must not make us hold its bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from racs.commands import (
    Apdu,
    ApduOptions,
    Begin,
    Echo,
    End,
    GetVersion,
    ListSeids,
    PowerOn,
    RacsCommand,
    Reset,
    SetVersion,
    Shutdown,
)
from racs.errors import (
    BadParameterError,
    CommandCode,
    FatalProtocolError,
    RacsError,
    RacsSyntaxError,
    RemoteProtocolError,
    UnknownCommandError,
)

CRLF = "\r\n"
MAX_LABEL = 64
__all__ = [
    "Apdu",
    "ApduOptions",
    "Begin",
    "Echo",
    "End",
    "GetVersion",
    "LineReader",
    "ListSeids",
    "PowerOn",
    "RacsCommand",
    "Reset",
    "ResponseLine",
    "SetVersion",
    "Shutdown",
    "format_error",
    "format_ok",
    "parse_apdu_body",
    "parse_command",
    "parse_response_line",
]
_SEID_RE = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")
# An index is a line number of one block: nine digits are plenty, and an unbounded run of
# digits is not an int Python will make (int() refuses more than 4300 digits).
_RESPONSE_RE = re.compile(r"([+-])(\d)(\d\d) (\d{3,9})(?: (.*))?")


class LineReader:
    """Splits a byte stream into lines of at most *max_line* bytes (CR LF or LF)."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._scanned = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_line(self) -> bytes | None:
        """The next complete line without its terminator, or None if none is in yet."""
        pos = self._buf.find(b"\n", self._scanned)
        if pos < 0:
            self._scanned = len(self._buf)
            if len(self._buf) > self.max_line:
                raise FatalProtocolError(f"line longer than {self.max_line} bytes")
            return None
        if pos > self.max_line:
            raise FatalProtocolError(f"line longer than {self.max_line} bytes")
        line = bytes(self._buf[:pos])
        del self._buf[: pos + 1]
        self._scanned = 0
        return line[:-1] if line.endswith(b"\r") else line


_NAMES: dict[str, CommandCode] = {c.name.replace("_", "-"): c for c in CommandCode}


def _text(line: bytes) -> str:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise UnknownCommandError("line is not ASCII text") from None
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text):
        raise UnknownCommandError("line holds control characters")
    return text


def parse_hex(token: str, what: str, command: CommandCode) -> bytes:
    if not _HEX_RE.fullmatch(token):
        raise RacsSyntaxError(f"{what} is not an even number of hex digits", command)
    return bytes.fromhex(token)


def _seid(tokens: list[str], code: CommandCode) -> str:
    if len(tokens) < 2:
        raise RacsSyntaxError(f"{code.name} needs a SEID", code)
    if not _SEID_RE.fullmatch(tokens[1]):
        raise BadParameterError(f"{tokens[1][:64]!r} is not a valid SEID", code)
    return tokens[1]


def _apdu_options(tokens: list[str]) -> ApduOptions:
    opts: dict[str, object] = {}
    code = CommandCode.APDU
    for tok in tokens:
        key, sep, value = tok.partition("=")
        key = key.upper()
        sizes = {"CONTINUE": 2, "FETCH": 4, "MORE": 1}
        if not sep or key not in sizes:
            raise RacsSyntaxError(f"unknown APDU option {tok[:32]!r}", code)
        raw = parse_hex(value, key, code)
        if len(raw) != sizes[key]:
            raise RacsSyntaxError(f"{key} takes {sizes[key]} bytes", code)
        opts[{"CONTINUE": "expect_sw", "FETCH": "fetch", "MORE": "more"}[key]] = (
            raw if key == "FETCH" else int.from_bytes(raw, "big")
        )
    return ApduOptions(**opts)  # type: ignore[arg-type]


def parse_apdu_body(line: bytes) -> bytes:
    """The continuation line of an ``APDU SEID`` command: the APDU in hex."""
    apdu = parse_hex(_text(line).strip(), "APDU", CommandCode.APDU)
    if len(apdu) < 4:
        raise RacsSyntaxError("an APDU has at least 4 header bytes", CommandCode.APDU)
    return apdu


def parse_command(line: bytes) -> RacsCommand:
    """One request line to a typed command; raises a :class:`RacsError` subclass."""
    tokens = _text(line).split()
    if not tokens:
        raise RacsSyntaxError("empty line")
    name = tokens[0].upper()
    code = _NAMES.get(name)
    if name == "END":
        return End()
    if code is None or code is CommandCode.NONE:
        raise UnknownCommandError(f"unknown command {tokens[0][:32]!r}")
    append = len(tokens) > 1 and tokens[-1].upper() == "APPEND"
    if append:
        tokens = tokens[:-1]
    if code is CommandCode.BEGIN:
        if len(tokens) > 2 or append:
            raise RacsSyntaxError("BEGIN takes one label", code)
        label = tokens[1] if len(tokens) == 2 else ""
        if len(label) > MAX_LABEL:
            raise BadParameterError(f"label longer than {MAX_LABEL} characters", code)
        return Begin(label)
    if code is CommandCode.GET_VERSION:
        return GetVersion(append)
    if code is CommandCode.LIST:
        return ListSeids(append)
    if code is CommandCode.SET_VERSION:
        if len(tokens) != 2:
            raise RacsSyntaxError("SET-VERSION takes one version", code)
        return SetVersion(tokens[1], append)
    if code is CommandCode.ECHO:
        if len(tokens) < 2:
            raise RacsSyntaxError("ECHO needs a value", code)
        return Echo(" ".join(tokens[1:]), append)
    seid = _seid(tokens, code)
    if code is CommandCode.POWERON:
        return PowerOn(seid, append)
    if code is CommandCode.SHUTDOWN:
        return Shutdown(seid, append)
    if code is CommandCode.RESET:
        if (len(tokens) > 2 and tokens[2].upper() != "WARM") or len(tokens) > 3:
            raise RacsSyntaxError("RESET takes a SEID and optionally WARM", code)
        return Reset(seid, len(tokens) == 3, append)
    # CommandCode.APDU
    rest = tokens[2:]
    apdu: bytes | None = None
    if rest and "=" not in rest[0]:
        apdu = parse_apdu_body(rest[0].encode())
        rest = rest[1:]
    return Apdu(seid, apdu, _apdu_options(rest), append)


@dataclass(frozen=True)
class ResponseLine:
    ok: bool
    code: str  # "+006", "-706"
    index: int
    text: str


def format_ok(command: CommandCode, index: int, text: str) -> str:
    return f"+0{int(command):02d} {index:03d} {text}".rstrip() + CRLF


def format_error(err: RacsError, index: int, command: CommandCode | None = None) -> str:
    reason = " ".join(err.reason.split())  # one line, whatever the reason held
    return f"{err.wire_code(command)} {index:03d} {reason}".rstrip() + CRLF


def parse_response_line(line: str) -> ResponseLine:
    """A client's view of one answer line; :class:`RemoteProtocolError` if it is not one."""
    m = _RESPONSE_RE.fullmatch(line.rstrip("\r\n"))
    if m is None:
        raise RemoteProtocolError(f"not a RACS response line: {line[:80]!r}")
    sign, cls, cmd, idx, text = m.groups()
    return ResponseLine(sign == "+", f"{sign}{cls}{cmd}", int(idx), text or "")
