"""The card-sync channel: what a key host and its key server say over the host's connection.

A card behind NAT (a SIM in a phone) cannot be dialled, so its host dials the
key server (``coap-open --sync``, the phone app) and relays APDUs, as a RACS
server would, over a WebSocket it opened (``PATH``). The key server drives:
it sends APDU scripts, the host answers each with the card's responses, and
the server ends with an ``Outcome`` or a ``Refused``. TLS#2 runs inside those
APDUs and ends in the card, so the host carries ciphertext only.

One JSON text frame per message, ``{"msg": NAME, ...}``; APDUs in hex. Both
sides decode with the functions below, which refuse anything malformed,
oversized or out of turn with a ``SyncFormatError``. ``relay_allowed`` is the
host's filter: the only commands a key server may have relayed into a card
(SELECT of the eLock applet, GET DATA of its certificate, TLS RECORDS). A PIN
try, an Open or a sealed command sent through a sync is refused by the host,
whoever asks for it; the host follows 61xx chaining itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from elock_common import card_protocol as c
from elock_common.errors import FormatError

VERSION = 1
PATH = "/v1/card-sync"
MAX_MESSAGE = 64 * 1024  # bytes of one frame, either way
MAX_APDUS = 32  # command APDUs in one script
MAX_APDU = 5000  # bytes of one command APDU (TLS RECORDS blocks are 240)
MAX_RESPONSE = 8192  # bytes of one response, chained answers joined
MAX_TEXT = 200  # a stage name or a reason


class SyncFormatError(FormatError):
    """A card-sync message is malformed, too large, or not allowed here."""


@dataclass(frozen=True)
class Hello:
    """Host → server, first: the protocol version it speaks."""

    version: int = VERSION


@dataclass(frozen=True)
class Apdus:
    """Server → host: send these to the card, in order; answer with ``Answers``."""

    apdus: tuple[bytes, ...]


@dataclass(frozen=True)
class Answers:
    """Host → server: the card's response to each APDU of the last script (data + SW)."""

    responses: tuple[bytes, ...]


@dataclass(frozen=True)
class Progress:
    """Server → host: where the sync is (for a progress line); no answer expected."""

    stage: str


@dataclass(frozen=True)
class Outcome:
    """Server → host, last: what the sync did. ``reason`` is set when some work failed."""

    added: int = 0
    removed: int = 0
    failed: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Refused:
    """Server → host, last: no sync this time (rate limit, card not accepted, busy)."""

    reason: str
    retry_after: int = 0  # seconds, 0 when another try would not help by itself


HostMessage = Hello | Answers
ServerMessage = Apdus | Progress | Outcome | Refused


def encode(message: HostMessage | ServerMessage) -> str:
    if isinstance(message, Hello):
        body: dict[str, object] = {"msg": "hello", "version": message.version}
    elif isinstance(message, Apdus):
        body = {"msg": "apdus", "apdus": [a.hex() for a in message.apdus]}
    elif isinstance(message, Answers):
        body = {"msg": "answers", "responses": [r.hex() for r in message.responses]}
    elif isinstance(message, Progress):
        body = {"msg": "progress", "stage": message.stage}
    elif isinstance(message, Outcome):
        body = {"msg": "outcome", "added": message.added, "removed": message.removed,
                "failed": message.failed, "reason": message.reason}  # fmt: skip
    else:
        body = {"msg": "refused", "reason": message.reason, "retry_after": message.retry_after}
    return json.dumps(body, separators=(",", ":"))


def decode_host_message(frame: str | bytes) -> HostMessage:
    body = _load(frame)
    kind = body.get("msg")
    if kind == "hello":
        _only(body, "version")
        return Hello(_count(body, "version", 1 << 16))
    if kind == "answers":
        _only(body, "responses")
        return Answers(_hex_list(body, "responses", MAX_RESPONSE))
    raise SyncFormatError(f"not a host message: {str(kind)[:20]!r}")


def decode_server_message(frame: str | bytes) -> ServerMessage:
    body = _load(frame)
    kind = body.get("msg")
    if kind == "apdus":
        _only(body, "apdus")
        return Apdus(_hex_list(body, "apdus", MAX_APDU))
    if kind == "progress":
        _only(body, "stage")
        return Progress(_text(body, "stage"))
    if kind == "outcome":
        _only(body, "added", "removed", "failed", "reason")
        return Outcome(
            _count(body, "added", 1000), _count(body, "removed", 1000),
            _count(body, "failed", 1000), _text(body, "reason"),
        )  # fmt: skip
    if kind == "refused":
        _only(body, "reason", "retry_after")
        return Refused(_text(body, "reason"), _count(body, "retry_after", 86400))
    raise SyncFormatError(f"not a server message: {str(kind)[:20]!r}")


def relay_allowed(apdu: bytes) -> bool:
    """Whether a host relays this command APDU into its card during a sync."""
    if len(apdu) < 4:
        return False
    cla, ins, p1, p2 = apdu[:4]
    if (cla, ins) == (c.CLA_ISO, c.INS_SELECT):
        return p1 == c.P1_SELECT_BY_NAME and apdu[5 : 5 + len(c.AID)] == c.AID
    if (cla, ins) == (c.CLA_ISO, c.INS_GET_DATA):
        return (p1, p2) == (0x7F, 0x21)  # GET DATA: the card certificate
    return (cla, ins) == (c.CLA_ISO, c.INS_TLS_RECORDS)


def _load(frame: str | bytes) -> dict[str, object]:
    if len(frame) > MAX_MESSAGE:
        raise SyncFormatError(f"message over {MAX_MESSAGE} bytes")
    try:
        body = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        raise SyncFormatError("message is not JSON") from None
    if not isinstance(body, dict):
        raise SyncFormatError("message is not a JSON object")
    return body


def _only(body: dict[str, object], *fields: str) -> None:
    extra = set(body) - {"msg", *fields}
    missing = set(fields) - set(body)
    if extra or missing:
        raise SyncFormatError(f"fields: unexpected {sorted(extra)}, missing {sorted(missing)}")


def _count(body: dict[str, object], name: str, limit: int) -> int:
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise SyncFormatError(f"{name} must be an integer 0..{limit}")
    return value


def _text(body: dict[str, object], name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or len(value) > MAX_TEXT or not value.isprintable():
        raise SyncFormatError(f"{name} must be printable text of at most {MAX_TEXT} characters")
    return value


def _hex_list(body: dict[str, object], name: str, item_limit: int) -> tuple[bytes, ...]:
    value = body[name]
    if not isinstance(value, list) or len(value) > MAX_APDUS:
        raise SyncFormatError(f"{name} must be a list of at most {MAX_APDUS}")
    out = []
    for item in value:
        if not isinstance(item, str) or len(item) > 2 * item_limit:
            raise SyncFormatError(f"{name}: each item is hex of at most {item_limit} bytes")
        try:
            out.append(bytes.fromhex(item))
        except ValueError:
            raise SyncFormatError(f"{name}: not hex") from None
    return tuple(out)
