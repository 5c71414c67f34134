"""The lock's side of the sync channel, sans I/O.

Text frames and explicit times in; frames to send, events and one timer out.
The asyncio shell (``sync_client``) owns the socket and the store; this decides
what the protocol allows. Two times come in, because the lock's wall clock is
what this channel checks and so cannot be what it keeps time by: ``now`` is a
steady clock (the shell's ``time.monotonic``) for every timer and round trip,
so a wall clock stepped back does not stall the pings; ``wall`` is the lock's
clock, only for what the messages say and the offset measured against it
(when omitted it is ``now``: one clock, as in the vectors). States::

    START --start()--> AWAIT_CHALLENGE --challenge ok--> AWAIT_WELCOME --welcome--> READY
       any state --refused / bad frame / missed pong--> CLOSED

Once READY the lock pings every ``ping_seconds`` (below the 30 s that common
NATs and proxies keep an idle mapping) and measures the key server's clock
from each pong; a pong missing for ``pong_timeout`` means the link is dead.
The handshake has the same bound: a challenge and welcome not in within
``pong_timeout`` of the hello end the session, so a peer that accepts the
connection and goes silent cannot hold the lock's sync for good, and a welcome
held back by a man in the middle cannot move the lock's clock judgement by more
than half of that.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from elock_common.lock_sync import (
    MAX_AUDIT_ROWS,
    NONCE_BYTES,
    AuditAck,
    AuditRow,
    AuditUpload,
    Challenge,
    Hello,
    Message,
    Ping,
    Pong,
    Proof,
    Refused,
    RevocationList,
    RevocationsHeld,
    Sealer,
    SyncFormatError,
    Welcome,
    decode,
    encode,
    hello_digest,
    lock_proof,
    server_proof,
    verify,
)

log = logging.getLogger(__name__)


class State(enum.Enum):
    START = "start"
    AWAIT_CHALLENGE = "await challenge"
    AWAIT_WELCOME = "await welcome"
    READY = "ready"
    CLOSED = "closed"


_HANDSHAKE = (State.AWAIT_CHALLENGE, State.AWAIT_WELCOME)


@dataclass(frozen=True)
class Synced:
    """Authenticated, and the server said where the audit upload resumes."""

    audit_cursor: int
    revocation_version: int  # the server's; a list follows unless the lock holds it


@dataclass(frozen=True)
class RevocationsReceived:
    version: int
    revoked: tuple[str, ...]


@dataclass(frozen=True)
class AuditAcked:
    through: int


@dataclass(frozen=True)
class ClockMeasured:
    offset: float  # the key server's clock minus ours, seconds
    round_trip: float


@dataclass(frozen=True)
class Closed:
    reason: str


Event = Synced | RevocationsReceived | AuditAcked | ClockMeasured | Closed


class LockSyncSession:
    def __init__(
        self,
        lock_id: str,
        sync_key: bytes,
        *,
        revocation_version: int,
        audit_log: int,
        max_clock_skew: float = 300.0,
        ping_seconds: float = 20.0,
        pong_timeout: float = 10.0,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.lock_id = lock_id
        self._key = sync_key
        self._held = revocation_version
        self._audit_log = audit_log
        self._max_clock_skew = max_clock_skew
        self._ping_seconds = ping_seconds
        self._pong_timeout = pong_timeout
        self._nonce = rng(NONCE_BYTES)
        self.state = State.START
        self._out: list[str] = []
        self._sealer: Sealer | None = None
        self._hello_at = 0.0
        self._hello = b""  # hello_digest of the hello we sent: both proofs cover it
        self._next_ping = 0.0
        self._ping_sent: float | None = None
        self.clock_offset: float | None = None
        # Audit upload: one batch in flight; the next starts after the last row sent.
        self._audit_after: int | None = None
        self._audit_in_flight = False

    # -- driving -------------------------------------------------------------------

    def start(self, now: float, wall: float | None = None) -> None:
        self._expect(State.START, "start")
        lock_time = now if wall is None else wall
        hello = encode(Hello(self.lock_id, self._nonce, lock_time, self._held, self._audit_log,
                             self._max_clock_skew))  # fmt: skip
        self._hello = hello_digest(hello)
        self._out.append(hello)
        self._hello_at = now
        self._set_state(State.AWAIT_CHALLENGE)

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    def receive(self, text: str | bytes, now: float, wall: float | None = None) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        if self.state in _HANDSHAKE and (late := self.handle_timer(now)):
            return late  # the deadline passed before this frame was read
        try:
            if self._sealer is None:
                return self._handshake(decode(text), now)
            return self._ready(self._sealer.open(text), now, now if wall is None else wall)
        except SyncFormatError as exc:
            return self._close(f"key server sent a bad message: {exc}")

    def get_timer(self) -> float | None:
        if self.state in _HANDSHAKE:
            return self._hello_at + self._pong_timeout
        if self.state is not State.READY:
            return None
        if self._ping_sent is not None:
            return self._ping_sent + self._pong_timeout
        return self._next_ping

    def handle_timer(self, now: float, wall: float | None = None) -> list[Event]:
        if self.state in _HANDSHAKE:
            if now >= self._hello_at + self._pong_timeout:
                waited = "challenge" if self.state is State.AWAIT_CHALLENGE else "welcome"
                return self._close(f"no {waited} within {self._pong_timeout:g} s of the hello")
            return []
        if self.state is not State.READY:
            return []
        if self._ping_sent is not None:
            if now >= self._ping_sent + self._pong_timeout:
                return self._close(f"no pong within {self._pong_timeout:g} s; link is dead")
            return []
        if now >= self._next_ping:
            self._send(Ping(now if wall is None else wall, self.clock_offset))
            self._ping_sent = now
        return []

    def confirm(self, version: int) -> None:
        """The store now holds ``version`` (after a list was applied, or refused as older)."""
        self._held = version
        if self.state is State.READY:
            self._send(RevocationsHeld(version))

    def audit_after(self) -> int | None:
        """Upload rows after this id now; None while a batch is in flight or not ready."""
        if self.state is not State.READY or self._audit_in_flight:
            return None
        return self._audit_after

    def upload(self, rows: list[AuditRow]) -> None:
        if self.audit_after() is None or not rows:
            raise RuntimeError("upload only what audit_after() asked for")
        batch = tuple(rows[:MAX_AUDIT_ROWS])
        self._send(AuditUpload(batch))
        self._audit_after = batch[-1].id
        self._audit_in_flight = True

    def close(self, reason: str) -> list[Event]:
        return self._close(reason)

    # -- protocol ------------------------------------------------------------------------

    def _handshake(self, message: Message, now: float) -> list[Event]:
        if isinstance(message, Refused):
            return self._close(f"key server refused: {message.reason}")
        if self.state is not State.AWAIT_CHALLENGE or not isinstance(message, Challenge):
            return self._close(f"unexpected {message.type} in state {self.state.value}")
        nonces = (self.lock_id, self._nonce, message.nonce)
        try:
            verify(server_proof(self._key, *nonces, hello=self._hello), message.proof,
                   "key server")  # fmt: skip
        except SyncFormatError as exc:
            return self._close(
                f"{exc}: not our key server, not our lock secret, or our hello was changed"
            )
        self._out.append(encode(Proof(lock_proof(self._key, *nonces, hello=self._hello))))
        self._sealer = Sealer.for_session(self._key, *nonces, hello=self._hello, lock=True)
        self._set_state(State.AWAIT_WELCOME)
        return []

    def _ready(self, message: Message, now: float, wall: float) -> list[Event]:
        if isinstance(message, Refused):
            return self._close(f"key server refused: {message.reason}")
        if self.state is State.AWAIT_WELCOME:
            if not isinstance(message, Welcome):
                return self._close(f"unexpected {message.type} before welcome")
            self._set_state(State.READY)
            self._audit_after = message.audit_cursor
            self._next_ping = now + self._ping_seconds
            events: list[Event] = [Synced(message.audit_cursor, message.revocation_version)]
            return events + self._measured(message.server_time, self._hello_at, now, wall)
        if isinstance(message, RevocationList):
            return [RevocationsReceived(message.version, message.revoked)]
        if isinstance(message, AuditAck):
            if self._audit_after is None or message.through > self._audit_after:
                return self._close(f"audit ack for row {message.through}, never sent")
            self._audit_in_flight = False
            return [AuditAcked(message.through)]
        if isinstance(message, Pong) and self._ping_sent is not None:
            sent, self._ping_sent = self._ping_sent, None
            self._next_ping = now + self._ping_seconds
            return self._measured(message.server_time, sent, now, wall)
        return self._close(f"unexpected {message.type} from the key server")

    def _measured(self, server_time: float, sent: float, now: float, wall: float) -> list[Event]:
        """The server's time is taken as of half the round trip ago, against the wall
        clock read now (not when the ping left: a step in between is then measured)."""
        round_trip = max(0.0, now - sent)
        self.clock_offset = server_time - (wall - round_trip / 2)
        return [ClockMeasured(self.clock_offset, round_trip)]

    def _send(self, message: Message) -> None:
        assert self._sealer is not None
        self._out.append(self._sealer.seal(message))

    def _close(self, reason: str) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        log.info("sync session closed: %s", reason)
        self._set_state(State.CLOSED)
        return [Closed(reason)]

    def _expect(self, state: State, what: str) -> None:
        if self.state is not state:
            raise RuntimeError(f"{what} in state {self.state.value}")

    def _set_state(self, state: State) -> None:
        log.debug("sync session %s -> %s", self.state.value, state.value)
        self.state = state
