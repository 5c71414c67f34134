"""``coap-open --sync``: the key host dials its card's key server and relays TLS#2.

The card names its key server (KEY SERVER, ``docs/apdu.md``). The host opens a
WebSocket there (``elock_common.card_sync``), says hello, then only answers:
each APDU script the server sends goes to the card, each response comes back,
until the server says how it went (``Outcome``) or why not (``Refused``).
TLS#2 ends in the card, so all the host ever sees is ciphertext, the card's
public certificate, and the counts of the outcome; it holds no credential.

The host is not a blind pipe: ``relay_allowed`` lets through only SELECT of
the eLock applet, GET DATA of the certificate and TLS RECORDS; anything else
(a PIN try, an Open) ends the sync. Card I/O runs in a thread, so the phone
app's event loop never blocks on the card.

``SyncRelay`` is the sans-I/O part (messages in, messages out); ``sync_card``
is the asyncio shell around a ``websockets`` connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from elock_common import card_sync as wire
from elock_common.apdu import exchange
from key_client.errors import KeyHostError, SyncError

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

Relay = Callable[[bytes], bytes]  # one command APDU to the card, its response


@runtime_checkable
class SyncChannel(Protocol):
    """What a sync needs of the card channel (``cards.AppletChannel`` has it)."""

    def key_server(self) -> str: ...

    def relay(self, apdu: bytes) -> bytes: ...

    def close(self) -> None: ...


Trace = Callable[[str, str], None]  # direction ("sent" / "received"), the frame
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class SyncResult:
    added: int
    removed: int
    failed: int
    reason: str = ""

    @property
    def message(self) -> str:
        text = f"{self.added} key(s) added, {self.removed} removed"
        if self.failed:
            text += f", {self.failed} failed: {self.reason}"
        return text


def sync_url(key_server: str) -> str:
    """The WebSocket URL of the card-sync endpoint of the key server the card names."""
    parts = urlsplit(key_server)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise SyncError(f"the card's key server URL is not http(s): {key_server[:60]!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + wire.PATH, "", ""))


class SyncRelay:
    """The host's side of one sync, without I/O: feed it server messages, send what it returns."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self.scripts = 0
        self.result: SyncResult | None = None

    def hello(self) -> str:
        return wire.encode(wire.Hello())

    def receive(self, frame: str | bytes) -> wire.ServerMessage:
        """Decode one server frame; raises ``SyncError`` on a malformed or forbidden one."""
        try:
            message = wire.decode_server_message(frame)
        except wire.SyncFormatError as exc:
            raise SyncError(f"the key server sent a malformed message: {exc}") from None
        if isinstance(message, wire.Apdus):
            for apdu in message.apdus:
                if not wire.relay_allowed(apdu):
                    raise SyncError(f"the key server asked to relay {apdu[:4].hex()}: refused")
        elif isinstance(message, wire.Outcome):
            self.result = SyncResult(message.added, message.removed, message.failed, message.reason)
        elif isinstance(message, wire.Refused):
            raise SyncError(f"the key server refused the sync: {message.reason}")
        return message

    def run_script(self, message: wire.Apdus) -> str:
        """Blocking: every APDU to the card (61xx followed here), the answers as a frame."""
        self.scripts += 1
        responses = []
        for apdu in message.apdus:
            try:
                data, sw = exchange(self._relay, apdu)
            except KeyHostError:
                raise
            except Exception as exc:  # pyscard raises its own families, and bare ones
                raise SyncError(f"the card stopped answering: {type(exc).__name__}") from None
            responses.append(data + sw.to_bytes(2, "big"))
        return wire.encode(wire.Answers(tuple(responses)))


async def sync_card(
    relay: Relay,
    key_server: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[[str], None] = lambda stage: None,
    trace: Trace | None = None,
) -> SyncResult:
    """One sync of the card behind *relay* with *key_server* (the URL the card names)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, WebSocketException

    url = sync_url(key_server)
    side = SyncRelay(relay)
    note = trace or (lambda direction, frame: None)
    progress("connecting")
    try:
        async with asyncio.timeout(timeout):
            async with connect(
                url, max_size=wire.MAX_MESSAGE, open_timeout=min(timeout, 15),
                compression=None, ping_interval=None,
            ) as ws:  # fmt: skip
                try:
                    await _send(ws, side.hello(), note)
                except ConnectionClosed:
                    pass  # refused at once: its reason is still to be read below
                async for frame in ws:
                    note("received", frame if isinstance(frame, str) else frame.hex())
                    message = side.receive(frame)
                    if isinstance(message, wire.Progress):
                        progress(message.stage)
                    elif isinstance(message, wire.Apdus):
                        answer = await asyncio.to_thread(side.run_script, message)
                        await _send(ws, answer, note)
                    elif isinstance(message, wire.Outcome):
                        break
    except TimeoutError:
        raise SyncError(f"the sync with {key_server} did not finish in {timeout:g} s") from None
    except (OSError, WebSocketException) as exc:
        why = f"the key server {key_server} is unreachable or cut the sync: {exc}"
        raise SyncError(why) from None
    if side.result is None:
        raise SyncError("the key server ended the sync without saying how it went")
    return side.result


async def _send(ws: ClientConnection, frame: str, note: Trace) -> None:
    note("sent", frame)
    await ws.send(frame)
