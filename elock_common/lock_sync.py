"""The messages of the lock's outbound sync channel, and its authentication.

The lock dials the key server (a WebSocket through the key server's HTTPS
proxy) and keeps the connection; over it the lock observes its revocation list
(the shape of RFC 9770), uploads its audit rows and learns the server's time.
This module is the one place both ends take the format from. Standard library
only: the lock imports it without the server's dependencies.

Every message is one JSON object in one text frame, with a ``type``. Parsing
is strict (exact field sets, types, ranges, sizes) and raises ``SyncFormatError``
with a reason; nothing half-parsed escapes.

Authentication needs no new secret: both ends derive ``sync_key`` from K_lock
with its own label (``LockSecret.derive_sync_key``). The lock says hello with a
fresh nonce; the server answers with its own nonce and a proof over both; the
lock checks it and proves itself over both nonces with another label. A proof
recorded from one connection is useless on the next (the other side's nonce
is new), and neither side's proof can be reflected as the other's. Both proofs
cover the hello frame too, so what the lock says in it cannot be changed. Both then
derive a session key from the two nonces, and every later message carries a
sequence number and an HMAC under it, so a message cannot be forged, replayed
or reordered within the session even where the link is not TLS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import math
import re
import urllib.parse
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from elock_common.errors import FormatError

PROTOCOL = "elock-lock-sync/2"  # 2: the proofs and session key cover the hello frame
MAX_MESSAGE = 1 << 20  # bytes of one frame: a full list of MAX_REVOKED ids fits easily
MAX_REVOKED = 20_000
MAX_AUDIT_ROWS = 200  # per upload message
NONCE_BYTES = 16
PROOF_BYTES = 32
MAX_VERSION = 2**53 - 1
MIN_CLOCK_SKEW, MAX_CLOCK_SKEW = 1.0, 86400.0  # a lock's sync.max_clock_skew_seconds
KEY_ID = re.compile(r"\A[0-9a-f]{12}\Z")
# Audit text fields are clipped to these lengths by the sender (the key server's columns).
AUDIT_TEXT = {"peer": 100, "action": 64, "reason": 300}
OUTCOMES = ("granted", "refused")

_SERVER_PROOF = b"elock lock-sync v1 server proof\x00"
_LOCK_PROOF = b"elock lock-sync v1 lock proof\x00"
_SESSION = b"elock lock-sync v1 session\x00"


class SyncFormatError(FormatError):
    """A sync message is malformed, too large or fails its MAC."""


class SyncAuthError(SyncFormatError):
    """A proof does not verify: wrong key, replayed or reflected."""


# -- messages ------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """lock → server: who I am, my nonce, my clock, what I hold."""

    type: ClassVar[str] = "hello"
    lock_id: str
    nonce: bytes
    lock_time: float
    revocation_version: int
    audit_log: int  # random id of the lock's audit log: a new one means its row ids restarted
    # The lock's sync.max_clock_skew_seconds: beyond it the lock refuses time-bounded keys,
    # so the key server's console warns at the lock's own bound, not at a guess.
    max_clock_skew: float
    protocol: str = PROTOCOL


@dataclass(frozen=True)
class Challenge:
    """server → lock: my nonce, and my proof that I hold K_lock."""

    type: ClassVar[str] = "challenge"
    nonce: bytes
    proof: bytes


@dataclass(frozen=True)
class Proof:
    """lock → server: my proof over both nonces."""

    type: ClassVar[str] = "proof"
    proof: bytes


@dataclass(frozen=True)
class Refused:
    """Either way: why the connection ends. Not MACed; it changes nothing."""

    type: ClassVar[str] = "refused"
    reason: str


@dataclass(frozen=True)
class Welcome:
    """server → lock, first sealed message: the time, and where the audit upload resumes."""

    type: ClassVar[str] = "welcome"
    server_time: float
    audit_cursor: int  # the last row id of this audit log the server stored
    revocation_version: int  # the list the lock should hold; a list follows unless it does


@dataclass(frozen=True)
class RevocationList:
    """server → lock: the full list, numbered; the lock confirms what it then holds."""

    type: ClassVar[str] = "revocations"
    version: int
    revoked: tuple[str, ...]


@dataclass(frozen=True)
class RevocationsHeld:
    """lock → server: the version the lock holds now (after a list, or on request)."""

    type: ClassVar[str] = "held"
    version: int


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: float
    key_id: str | None
    peer: str
    action: str
    outcome: str
    reason: str

    @classmethod
    def clipped(
        cls,
        id: int,
        ts: float,
        key_id: str | None,
        peer: str,
        action: str,
        outcome: str,
        reason: str,
    ) -> AuditRow:
        """A row as the lock sends it: text cut to the server's columns."""
        return cls(
            id,
            float(ts),
            key_id if key_id and KEY_ID.match(key_id) else None,
            peer[: AUDIT_TEXT["peer"]],
            action[: AUDIT_TEXT["action"]],
            outcome,
            reason[: AUDIT_TEXT["reason"]],
        )


@dataclass(frozen=True)
class AuditUpload:
    """lock → server: rows after the server's cursor, in id order (at least once)."""

    type: ClassVar[str] = "audit"
    rows: tuple[AuditRow, ...]


@dataclass(frozen=True)
class AuditAck:
    """server → lock: every row up to ``through`` is stored; the lock may prune them."""

    type: ClassVar[str] = "audit_ack"
    through: int


@dataclass(frozen=True)
class Ping:
    """lock → server: keeps NAT and proxies awake; carries the lock's clock offset."""

    type: ClassVar[str] = "ping"
    lock_time: float
    clock_offset: float | None  # server minus lock, seconds, as the lock last measured it


@dataclass(frozen=True)
class Pong:
    type: ClassVar[str] = "pong"
    lock_time: float  # echoed: the lock measures the round trip with it
    server_time: float


Message = (
    Hello
    | Challenge
    | Proof
    | Refused
    | Welcome
    | RevocationList
    | RevocationsHeld
    | AuditUpload
    | AuditAck
    | Ping
    | Pong
)
_TYPES: dict[str, type[Any]] = {
    cls.type: cls
    for cls in (
        Hello,
        Challenge,
        Proof,
        Refused,
        Welcome,
        RevocationList,
        RevocationsHeld,
        AuditUpload,
        AuditAck,
        Ping,
        Pong,
    )
}
UNSEALED = (Hello, Challenge, Proof, Refused)


# -- encoding --------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _fields(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"type": message.type}
    for name, value in asdict(message).items():
        if isinstance(value, bytes):
            value = _b64(value)
        elif name == "rows":
            value = [dict(row) for row in value]
        elif isinstance(value, tuple):
            value = list(value)
        body[name] = value
    return body


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def encode(message: Message) -> str:
    """An unsealed message (hello, challenge, proof, refused)."""
    if not isinstance(message, UNSEALED):
        raise TypeError(f"{message.type} must be sealed")
    return _canonical(_fields(message)).decode()


def decode(text: str | bytes) -> Message:
    """Parse one unsealed message strictly."""
    body = _load(text)
    message = _parse(body)
    if not isinstance(message, UNSEALED):
        raise SyncFormatError(f"{message.type} must be sealed (sent before authentication)")
    return message


def _load(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_MESSAGE:
        raise SyncFormatError(f"message larger than {MAX_MESSAGE} bytes")
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except SyncFormatError:
        raise  # NaN or Infinity (_no_constant): its own reason
    except (ValueError, RecursionError):
        # ValueError: JSONDecodeError and UnicodeDecodeError, and also the one Python
        # raises for an integer of more than 4300 digits, which must not escape either.
        raise SyncFormatError("message is not JSON") from None
    if not isinstance(body, dict):
        raise SyncFormatError("message must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    raise SyncFormatError(f"{name} is not a number")


def _parse(body: dict[str, Any]) -> Message:
    kind = body.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SyncFormatError(f"unknown message type {str(kind)[:40]!r}")
    names = [f.name for f in fields(cls)]
    wanted = {"type", *names}
    if set(body) != wanted:
        missing, extra = wanted - set(body), set(body) - wanted
        raise SyncFormatError(
            f"{kind}: fields wrong (missing {sorted(missing)}, unexpected {sorted(extra)[:5]})"
        )
    return cls(**{name: _FIELD[name](body[name], f"{kind}.{name}") for name in names})  # type: ignore[no-any-return]


def sync_url_problem(url: str) -> str | None:
    """Why *url* cannot be where locks dial (``ws://`` or ``wss://``, a host, a port in
    1..65535), or None. The key server checks it before it goes into every bundle, the
    lock when it reads its config: a port websockets refuses later ended the lock's sync."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises for a port that is not 0..65535
    except ValueError:
        return f"{url[:100]!r} is not a URL (host or port)"
    if parts.scheme not in ("ws", "wss") or not parts.hostname or port == 0:
        return "must be a ws:// or wss:// URL with a host, such as wss://keys.example.org/sync/lock"
    return None


# -- field checks ------------------------------------------------------------------


def _int(value: Any, where: str, high: int = MAX_VERSION) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise SyncFormatError(f"{where} must be an integer 0..{high}")
    return value


def _time(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SyncFormatError(f"{where} must be a number of seconds")
    if not 0 <= value < 2**40:
        raise SyncFormatError(f"{where} is out of range")
    return float(value)


def _offset(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SyncFormatError(f"{where} must be a number of seconds or null")
    if abs(value) >= 2**40:
        raise SyncFormatError(f"{where} is out of range")
    return float(value)


def _skew(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SyncFormatError(f"{where} must be a number of seconds")
    if not MIN_CLOCK_SKEW <= value <= MAX_CLOCK_SKEW:
        raise SyncFormatError(f"{where} must be {MIN_CLOCK_SKEW:g} to {MAX_CLOCK_SKEW:g} seconds")
    return float(value)


def _text(limit: int) -> Any:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise SyncFormatError(f"{where} must be text of at most {limit} characters")
        return value

    return check


def _bytes(size: int) -> Any:
    def check(value: Any, where: str) -> bytes:
        if not isinstance(value, str) or len(value) > 2 * size:
            raise SyncFormatError(f"{where} must be base64url")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise SyncFormatError(f"{where} must be base64url") from None
        if len(raw) != size:
            raise SyncFormatError(f"{where} must be {size} bytes")
        return raw

    return check


def _lock_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 36:
        raise SyncFormatError(f"{where} must be a lock id (UUID)")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise SyncFormatError(f"{where} must be a lock id (UUID)") from None


def _protocol(value: Any, where: str) -> str:
    if value != PROTOCOL:
        raise SyncFormatError(f"{where}: this server speaks {PROTOCOL}")
    return PROTOCOL


def _revoked(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_REVOKED:
        raise SyncFormatError(f"{where} must be a list of at most {MAX_REVOKED} key ids")
    if not all(isinstance(k, str) and KEY_ID.match(k) for k in value):
        raise SyncFormatError(f"{where}: each key id must be 12 lowercase hex digits")
    return tuple(value)


def _rows(value: Any, where: str) -> tuple[AuditRow, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_AUDIT_ROWS:
        raise SyncFormatError(f"{where} must be a list of 1..{MAX_AUDIT_ROWS} rows")
    rows = tuple(_row(item, f"{where}[{i}]") for i, item in enumerate(value))
    if any(b.id <= a.id for a, b in itertools.pairwise(rows)):
        raise SyncFormatError(f"{where} must be in increasing id order")
    return rows


def _row(item: Any, where: str) -> AuditRow:
    names = [f.name for f in fields(AuditRow)]
    if not isinstance(item, dict) or set(item) != set(names):
        raise SyncFormatError(f"{where} must have exactly the fields {names}")
    key_id = item["key_id"]
    if key_id is not None and not (isinstance(key_id, str) and KEY_ID.match(key_id)):
        raise SyncFormatError(f"{where}.key_id must be null or 12 lowercase hex digits")
    if item["outcome"] not in OUTCOMES:
        raise SyncFormatError(f"{where}.outcome must be granted or refused")
    if _int(item["id"], f"{where}.id") == 0:
        raise SyncFormatError(f"{where}.id must be positive")
    text = {n: _text(AUDIT_TEXT[n])(item[n], f"{where}.{n}") for n in AUDIT_TEXT}
    return AuditRow(
        id=item["id"],
        ts=_time(item["ts"], f"{where}.ts"),
        key_id=key_id,
        outcome=item["outcome"],
        **text,
    )


_FIELD: dict[str, Any] = {
    "lock_id": _lock_id,
    "nonce": _bytes(NONCE_BYTES),
    "proof": _bytes(PROOF_BYTES),
    "lock_time": _time,
    "server_time": _time,
    "revocation_version": _int,
    "audit_log": _int,
    "protocol": _protocol,
    "reason": _text(300),
    "audit_cursor": _int,
    "version": _int,
    "revoked": _revoked,
    "rows": _rows,
    "through": _int,
    "clock_offset": _offset,
    "max_clock_skew": _skew,
}


# -- authentication ----------------------------------------------------------------------


def hello_digest(frame: str | bytes) -> bytes:
    """SHA-256 of the hello frame as it went over the wire, for the proofs.

    The hello itself is not MACed (no key is agreed yet), so the proofs cover it:
    a man in the middle who changes what the lock says it holds (its revocation
    version, its audit log) makes both proofs fail instead of steering the server.
    """
    return hashlib.sha256(frame.encode() if isinstance(frame, str) else frame).digest()


def _proof(
    sync_key: bytes,
    label: bytes,
    lock_id: str,
    lock_nonce: bytes,
    server_nonce: bytes,
    hello: bytes,
) -> bytes:
    # Every part has a fixed length (UUID text, 16-byte nonces, a SHA-256 digest).
    data = label + lock_id.encode() + lock_nonce + server_nonce + hello
    return hmac.digest(sync_key, data, "sha256")


def server_proof(
    sync_key: bytes, lock_id: str, lock_nonce: bytes, server_nonce: bytes, *, hello: bytes
) -> bytes:
    """``hello`` is ``hello_digest`` of the hello frame."""
    return _proof(sync_key, _SERVER_PROOF, lock_id, lock_nonce, server_nonce, hello)


def lock_proof(
    sync_key: bytes, lock_id: str, lock_nonce: bytes, server_nonce: bytes, *, hello: bytes
) -> bytes:
    """``hello`` is ``hello_digest`` of the hello frame."""
    return _proof(sync_key, _LOCK_PROOF, lock_id, lock_nonce, server_nonce, hello)


def verify(expected: bytes, given: bytes, who: str) -> None:
    """Raise unless ``given`` is ``expected`` (constant time)."""
    if not hmac.compare_digest(expected, given):
        raise SyncAuthError(f"the {who}'s proof does not verify")


@dataclass
class Sealer:
    """Seals and opens the messages after authentication: sequence number and HMAC.

    ``outgoing``/``incoming`` are direction labels (``b"L"`` lock to server, ``b"S"``
    back), so a message cannot be reflected to its sender.
    """

    key: bytes = field(repr=False)
    outgoing: bytes
    incoming: bytes
    sent: int = 0
    received: int = 0

    @classmethod
    def for_session(
        cls,
        sync_key: bytes,
        lock_id: str,
        lock_nonce: bytes,
        server_nonce: bytes,
        *,
        hello: bytes,
        lock: bool,
    ) -> Sealer:
        key = _proof(sync_key, _SESSION, lock_id, lock_nonce, server_nonce, hello)
        return cls(key, b"L", b"S") if lock else cls(key, b"S", b"L")

    def seal(self, message: Message) -> str:
        if isinstance(message, UNSEALED):
            raise TypeError(f"{message.type} is never sealed")
        self.sent += 1
        body = _fields(message) | {"seq": self.sent}
        body["mac"] = _b64(hmac.digest(self.key, self.outgoing + _canonical(body), "sha256"))
        return _canonical(body).decode()

    def open(self, text: str | bytes) -> Message:
        body = _load(text)
        if body.get("type") == Refused.type:
            return _parse(body)
        mac, seq = body.pop("mac", None), body.get("seq")
        if not isinstance(mac, str) or isinstance(seq, bool) or not isinstance(seq, int):
            raise SyncFormatError("message after authentication must carry seq and mac")
        expected = hmac.digest(self.key, self.incoming + _canonical(body), "sha256")
        if not hmac.compare_digest(_bytes(PROOF_BYTES)(mac, "mac"), expected):
            raise SyncAuthError("message MAC does not verify")
        if seq != self.received + 1:
            raise SyncAuthError(f"message out of sequence ({seq} after {self.received})")
        self.received = seq
        del body["seq"]
        message = _parse(body)
        if isinstance(message, UNSEALED):
            raise SyncFormatError(f"{message.type} is not expected after authentication")
        return message
