"""The RACS session as a sans-I/O state machine (h11 style: transitions as a table).

The server feeds bytes in with :meth:`RacsSession.receive_data`, pulls
:class:`CommandRequest` events with :meth:`RacsSession.next_event`, executes
each one (cards, locks, access control live outside) and reports back with
:meth:`RacsSession.succeed` or :meth:`RacsSession.fail`; whatever must go on
the wire comes out of :meth:`RacsSession.data_to_send`. No sockets, no clock,
so every (state, input) pair can be tested and fuzzed in memory.

Response assembly follows the author's implementation of the draft: a
command's line is kept if the command carries ``APPEND`` or is the last of
the block; otherwise the next command's line replaces it. An error answers at
once with ``BEGIN label / -CYZ NNN reason / END`` and the rest of the block,
up to its ``END``, is skipped unexecuted.
"""

from __future__ import annotations

import logging
from enum import Enum, auto

from racs.errors import (
    CommandCode,
    FatalProtocolError,
    IllegalCommandError,
    LocalProtocolError,
    RacsError,
    RacsSyntaxError,
    SystemFailureError,
)
from racs.events import Closed, CommandRequest, Event, Limits, NeedData
from racs.protocol import (
    CRLF,
    Apdu,
    Begin,
    End,
    LineReader,
    RacsCommand,
    format_error,
    format_ok,
    parse_apdu_body,
    parse_command,
)

__all__ = ["Closed", "CommandRequest", "Event", "Limits", "NeedData", "RacsSession", "State"]
log = logging.getLogger(__name__)


class State(Enum):
    IDLE = auto()  # between blocks, waiting for BEGIN
    IN_BLOCK = auto()
    APDU_BODY = auto()  # "APDU SEID" seen, the APDU hex is on the next line
    AWAIT_RESULT = auto()  # a CommandRequest is out, waiting for succeed()/fail()
    FLUSHING = auto()  # an error was answered; skip lines up to END
    CLOSED = auto()


class Input(Enum):
    BEGIN = auto()
    END = auto()
    COMMAND = auto()
    APDU_HEAD = auto()
    BODY = auto()
    BAD_LINE = auto()
    RESULT_OK = auto()
    RESULT_ERROR = auto()
    FATAL = auto()


S, I = State, Input  # noqa: E741
# fmt: off
_TRANSITIONS: dict[State, dict[Input, State]] = {
    S.IDLE: {I.BEGIN: S.IN_BLOCK, I.END: S.IDLE, I.COMMAND: S.IDLE, I.APDU_HEAD: S.IDLE,
             I.BAD_LINE: S.IDLE, I.FATAL: S.CLOSED},
    S.IN_BLOCK: {I.BEGIN: S.FLUSHING, I.END: S.IDLE, I.COMMAND: S.AWAIT_RESULT,
                 I.APDU_HEAD: S.APDU_BODY, I.BAD_LINE: S.FLUSHING, I.FATAL: S.CLOSED},
    S.APDU_BODY: {I.BODY: S.AWAIT_RESULT, I.END: S.IDLE, I.BAD_LINE: S.FLUSHING,
                  I.FATAL: S.CLOSED},
    S.AWAIT_RESULT: {I.RESULT_OK: S.IN_BLOCK, I.RESULT_ERROR: S.FLUSHING, I.FATAL: S.CLOSED},
    S.FLUSHING: {I.BEGIN: S.FLUSHING, I.END: S.IDLE, I.COMMAND: S.FLUSHING,
                 I.APDU_HEAD: S.FLUSHING, I.BAD_LINE: S.FLUSHING, I.FATAL: S.CLOSED},
    S.CLOSED: {},
}
# fmt: on


class RacsSession:
    def __init__(self, limits: Limits | None = None, sid: int = 0) -> None:
        self.limits = limits or Limits()
        self.sid = sid
        self.state = State.IDLE
        self.close_reason = ""
        self.lines_seen = 0
        self._reader = LineReader(self.limits.max_line)
        self._out: list[str] = []
        self._label = ""
        self._index = 0
        self._block_bytes = 0
        self._idle_errors = 0
        self._kept: list[str] = []
        self._last: tuple[str, bool] | None = None  # (line, append)
        self._pending: CommandRequest | None = None
        self._apdu_head: tuple[Apdu, int] | None = None  # "APDU SEID" and its index

    def _set_state(self, event: Input) -> None:
        new = _TRANSITIONS[self.state].get(event)
        if new is None:
            raise LocalProtocolError(f"{event.name} is not allowed in state {self.state.name}")
        if new is not self.state:
            log.debug("sid %d: %s -> %s on %s", self.sid, self.state.name, new.name, event.name)
        self.state = new

    # -- input ----------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            raise LocalProtocolError("session is closed")
        self._reader.feed(data)

    def next_event(self) -> Event:
        while self.state is not State.CLOSED:
            if self.state is State.AWAIT_RESULT:
                raise LocalProtocolError("report the result of the pending command first")
            try:
                line = self._reader.next_line()
            except FatalProtocolError as err:
                self._fatal(err, 0 if self.state is State.IDLE else self._index + 1)
                break
            if line is None:
                return NeedData()
            request = self._handle_line(line)
            if request is not None:
                return request
        return Closed(self.close_reason)

    def _handle_line(self, line: bytes) -> CommandRequest | None:
        self.lines_seen += 1
        if self.state is not State.IDLE:
            self._index += 1
            self._block_bytes += len(line) + 1
            if self._index > self.limits.max_block_lines:
                self._fatal(FatalProtocolError("block has too many lines"), self._index)
                return None
            if self._block_bytes > self.limits.max_block_bytes:
                self._fatal(FatalProtocolError("block is too large"), self._index)
                return None
        if not line.strip():
            if self.state is State.IDLE:  # harmless, but not forever
                self._count_idle_error()
            return None
        if self.state is State.APDU_BODY:
            assert self._apdu_head is not None
            (head, at), self._apdu_head = self._apdu_head, None
            if line.split()[0].upper() == b"END":  # the block ends: answer, do not flush
                err: RacsError = RacsSyntaxError("APDU without its hex data")
                self._answer_error(Input.END, err, CommandCode.APDU, at)
                return None
            try:
                body = parse_apdu_body(line)
            except RacsError as err:
                self._answer_error(Input.BAD_LINE, err, CommandCode.APDU, at)
                return None
            return self._request(Input.BODY, Apdu(head.seid, body, head.options, head.append), at)
        try:
            command = parse_command(line)
        except RacsError as err:
            if self.state is not State.FLUSHING:
                self._answer_error(Input.BAD_LINE, err)
            return None
        return self._dispatch(command)

    def _dispatch(self, command: RacsCommand) -> CommandRequest | None:
        if self.state is State.FLUSHING:
            if isinstance(command, End):
                self._label = ""
            self._set_state(Input.END if isinstance(command, End) else Input.COMMAND)
            return None
        if self.state is State.IDLE:
            if isinstance(command, Begin):
                self._set_state(Input.BEGIN)
                self._idle_errors, self._index, self._block_bytes = 0, 0, 0
                self._label, self._kept = command.label, []
                self._last = (format_ok(CommandCode.BEGIN, 0, "No error"), False)
                return None
            event = Input.END if isinstance(command, End) else Input.COMMAND
            self._answer_error(event, IllegalCommandError("waiting for BEGIN"), command.code)
            return None
        # IN_BLOCK
        if isinstance(command, Begin):
            err = IllegalCommandError("duplicate BEGIN")
            self._answer_error(Input.BEGIN, err, CommandCode.BEGIN)
            return None
        if isinstance(command, End):
            if self._last is not None:
                self._kept.append(self._last[0])
            self._out += [self._begin_line(), *self._kept, "END" + CRLF]
            self._kept, self._last, self._label = [], None, ""
            self._set_state(Input.END)
            return None
        if isinstance(command, Apdu) and command.apdu is None:
            self._set_state(Input.APDU_HEAD)
            self._apdu_head = (command, self._index)
            return None
        return self._request(Input.COMMAND, command)

    def _request(self, event: Input, command: RacsCommand, index: int = -1) -> CommandRequest:
        self._set_state(event)
        self._pending = CommandRequest(self._index if index < 0 else index, command)
        return self._pending

    # -- results --------------------------------------------------------------
    def succeed(self, text: str) -> None:
        """The pending command worked; *text* follows its ``+0YZ NNN``."""
        pending = self._take_pending()
        if self._last is not None and self._last[1]:
            self._kept.append(self._last[0])
        line = format_ok(pending.command.code, pending.index, text)
        if sum(map(len, self._kept)) + len(line) > self.limits.max_response_bytes:
            err = SystemFailureError("response too large")
            self._answer_error(Input.RESULT_ERROR, err, pending.command.code, pending.index)
            return
        self._set_state(Input.RESULT_OK)
        self._last = (line, bool(getattr(pending.command, "append", False)))

    def fail(self, err: RacsError) -> None:
        """The pending command was refused or failed; answer the error now."""
        pending = self._take_pending()
        self._answer_error(Input.RESULT_ERROR, err, pending.command.code, pending.index)

    def _take_pending(self) -> CommandRequest:
        if self.state is not State.AWAIT_RESULT or self._pending is None:
            raise LocalProtocolError("no command is waiting for a result")
        pending, self._pending = self._pending, None
        return pending

    # -- output ---------------------------------------------------------------
    def _begin_line(self) -> str:
        return f"BEGIN {self._label}".rstrip() + CRLF

    def _answer_error(
        self, event: Input, err: RacsError, code: CommandCode | None = None, index: int = -1
    ) -> None:
        was_idle = self.state is State.IDLE
        at = 0 if was_idle else self._index if index < 0 else index
        self._set_state(event)
        log.info("sid %d: line %d refused: %s %s", self.sid, at, err.wire_code(code), err.reason)
        self._out += [self._begin_line(), format_error(err, at, code), "END" + CRLF]
        self._kept, self._last = [], None
        if was_idle:
            self._count_idle_error()

    def _count_idle_error(self) -> None:
        self._idle_errors += 1
        if self._idle_errors > self.limits.max_idle_errors:
            self._close("too many lines outside a block")

    def _fatal(self, err: FatalProtocolError, index: int) -> None:
        log.warning("sid %d: closing: %s", self.sid, err.reason)
        self._out += [self._begin_line(), format_error(err, index), "END" + CRLF]
        self._set_state(Input.FATAL)
        self.close_reason = err.reason

    def _close(self, reason: str) -> None:
        log.warning("sid %d: closing: %s", self.sid, reason)
        self.state, self.close_reason = State.CLOSED, reason

    def data_to_send(self) -> bytes:
        data = "".join(self._out).encode("ascii")
        self._out.clear()
        return data
