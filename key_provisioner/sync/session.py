"""The key server's side of one lock's sync connection, sans I/O.

Frames and ``now`` in; frames and events out. The shell (``sync.endpoint``)
looks the lock up when ``HelloReceived`` comes, and answers with ``challenge``
(or ``refuse``); everything after the lock's proof is sealed. States::

    AWAIT_HELLO --hello--> LOOKUP --challenge()--> AWAIT_PROOF --proof ok--> READY
        any state --bad frame / bad proof / refuse()--> CLOSED
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from elock_common.lock_sync import (
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


class State(enum.Enum):
    AWAIT_HELLO = "await hello"
    LOOKUP = "lookup"
    AWAIT_PROOF = "await proof"
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True)
class HelloReceived:
    hello: Hello


@dataclass(frozen=True)
class Authenticated:
    hello: Hello


@dataclass(frozen=True)
class HeldReported:
    version: int


@dataclass(frozen=True)
class AuditReceived:
    rows: tuple[AuditRow, ...]


@dataclass(frozen=True)
class PingReceived:
    clock_offset: float | None


@dataclass(frozen=True)
class Closed:
    reason: str
    by_lock: bool = False  # the lock ended it (rather than our refusal)


Event = HelloReceived | Authenticated | HeldReported | AuditReceived | PingReceived | Closed


class ServerSyncSession:
    def __init__(self, *, rng: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.state = State.AWAIT_HELLO
        self._rng = rng
        self._out: list[str] = []
        self.hello: Hello | None = None
        self._key = b""
        self._nonce = b""
        self._hello = b""  # hello_digest of the hello frame: both proofs cover it
        self._sealer: Sealer | None = None

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    def receive(self, text: str | bytes, now: float) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        if self.state is State.AWAIT_HELLO:
            self._hello = hello_digest(text)
        try:
            message = decode(text) if self._sealer is None else self._sealer.open(text)
        except SyncFormatError as exc:
            return self.refuse(str(exc))
        return self._handle(message, now)

    def challenge(self, sync_key: bytes) -> None:
        """The lock exists and is in service: prove we hold its key, ask for its proof."""
        assert self.state is State.LOOKUP and self.hello is not None
        self._key, self._nonce = sync_key, self._rng(NONCE_BYTES)
        proof = server_proof(
            sync_key, self.hello.lock_id, self.hello.nonce, self._nonce, hello=self._hello
        )
        self._out.append(encode(Challenge(self._nonce, proof)))
        self.state = State.AWAIT_PROOF

    def welcome(self, server_time: float, audit_cursor: int, revocation_version: int) -> None:
        self._send(Welcome(server_time, audit_cursor, revocation_version))

    def send_revocations(self, version: int, revoked: tuple[str, ...]) -> None:
        self._send(RevocationList(version, revoked))

    def ack_audit(self, through: int) -> None:
        self._send(AuditAck(through))

    def refuse(self, reason: str) -> list[Event]:
        """End the connection with a reason the lock logs; changes nothing else."""
        if self.state is State.CLOSED:
            return []
        self._out.append(encode(Refused(reason[:300])))
        self.state = State.CLOSED
        return [Closed(reason)]

    def _handle(self, message: Message, now: float) -> list[Event]:
        if isinstance(message, Refused):
            self.state = State.CLOSED
            return [Closed(f"lock ended the session: {message.reason}", by_lock=True)]
        if self.state is State.AWAIT_HELLO and isinstance(message, Hello):
            self.hello = message
            self.state = State.LOOKUP
            return [HelloReceived(message)]
        if self.state is State.AWAIT_PROOF and isinstance(message, Proof):
            assert self.hello is not None
            nonces = (self.hello.lock_id, self.hello.nonce, self._nonce)
            expected = lock_proof(self._key, *nonces, hello=self._hello)
            try:
                verify(expected, message.proof, "lock")
            except SyncFormatError as exc:
                return self.refuse(str(exc))
            self._sealer = Sealer.for_session(self._key, *nonces, hello=self._hello, lock=False)
            self.state = State.READY
            return [Authenticated(self.hello)]
        if self.state is State.READY:
            if isinstance(message, RevocationsHeld):
                return [HeldReported(message.version)]
            if isinstance(message, AuditUpload):
                return [AuditReceived(message.rows)]
            if isinstance(message, Ping):
                self._send(Pong(message.lock_time, now))
                return [PingReceived(message.clock_offset)]
        return self.refuse(f"unexpected {message.type} in state {self.state.value}")

    def _send(self, message: Message) -> None:
        if self.state is not State.READY or self._sealer is None:
            return
        self._out.append(self._sealer.seal(message))
