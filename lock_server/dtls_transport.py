"""The lock's DTLS server transport: aiocoap's tinydtls server, keyed by derivation.

aiocoap's tinydtls server looks a PSK up in a table; the lock has no table. A
per-peer ``_DerivingPskStore`` answers tinydtls's lookup by parsing the
identity and deriving the PSK, and remembers the claims so resources can read
them from ``request.remote.authenticated_claims``.

A handshake that fails never reaches a resource, yet the audit log must still
say who tried and why. So the store reports refusals itself: a malformed
identity or one minted for another lock at lookup time; a wrong PSK when the
peer's handshake does not complete (fatal alert or silence) after a lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiocoap.numbers import COAP_PORT, COAPS_PORT
from aiocoap.transports import tinydtls_server as upstream

from elock_common import IdentityFormatError, KeyIdentity, LockSecret

log = logging.getLogger(__name__)

# (peer, key id or None, reason) -> None; writes the audit row.
RefusalSink = Callable[[str, str | None, str], None]

HANDSHAKE_DEADLINE = 20.0  # seconds from PSK lookup to "connected"
SESSION_SECONDS = 30.0  # from "connected" to the session's end (lock.session_seconds)
MAX_PEERS = 512
MAX_REPLAYS = 8  # per peer: bounds what a spoofed peer can make us send
MAX_REMEMBERED_FLIGHTS = 4
# aiocoap compares tinydtls's retransmission time with a clock of its own that started
# earlier, so "due" is often in the past and its per-peer task re-arms itself at once:
# a busy loop per peer, which under a handshake flood eats the CPU every open needs.
MIN_RETRANSMIT_CHECK = 0.25  # seconds between two retransmission checks of one peer
_EVENT_CONNECTED = 0x01DE
_HANDSHAKE_FAILURE = 40  # the TLS alert a refused handshake ends with
_CLIENT_KEY_EXCHANGE = b"\x10"  # handshake message type (RFC 5246 7.4)
SECOND_KEY_EXCHANGE = "handshake refused: a second, different ClientKeyExchange"
_LEVEL_FATAL = 2


class KeyDerivingCredentials:
    """What aiocoap calls server credentials: never empty, never a table."""

    def __init__(self, secret: LockSecret) -> None:
        self.secret = secret

    def __bool__(self) -> bool:
        # aiocoap runs a server *without* credentials when this is falsy.
        return True


class _DerivingPskStore:
    """The mapping DTLSSocket consults (``id in store.keys()``, ``store[id]``)."""

    def __init__(self, credentials: KeyDerivingCredentials, peer: str, sink: RefusalSink) -> None:
        self._secret = credentials.secret
        self._peer = peer
        self._sink = sink
        self._claims: KeyIdentity | None = None
        self._refused: set[bytes] = set()
        self.on_lookup: Callable[[KeyIdentity], None] = lambda claims: None
        self.on_refused: Callable[[], None] = lambda: None

    def keys(self) -> _DerivingPskStore:
        return self

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, bytes) and self._claims_for(identity) is not None

    def __getitem__(self, identity: bytes) -> bytes:
        claims = self._claims_for(identity)
        if claims is None:
            raise KeyError("unknown identity")
        if self._claims is not None and self._claims != claims:
            raise KeyError("identity changed within one session")
        self._claims = claims
        self.on_lookup(claims)
        return self._secret.derive_psk(identity)

    def _claims_for(self, identity: bytes) -> KeyIdentity | None:
        try:
            claims = KeyIdentity.decode(identity)
        except IdentityFormatError as exc:
            self._refuse_once(identity, None, f"handshake refused: malformed identity ({exc})")
            return None
        if claims.lock_tag != self._secret.lock_tag:
            self._refuse_once(
                identity, claims.key_id_hex, "handshake refused: key minted for another lock"
            )
            return None
        return claims

    def _refuse_once(self, identity: bytes, key_id: str | None, reason: str) -> None:
        if identity not in self._refused:
            self._refused.add(identity)
            self._sink(self._peer, key_id, reason)
        self.on_refused()


class _PeerDTLS(upstream._AddressDTLS):
    """One DTLS peer; adds derivation, refusal reports and a handshake deadline."""

    def __init__(self, protocol: Any, underlying_address: Any) -> None:
        super().__init__(protocol, underlying_address)
        sink: RefusalSink = protocol._refusal_sink
        store = _DerivingPskStore(protocol._server_credentials, self.hostinfo, sink)
        store.on_lookup = self._looked_up
        store.on_refused = self._forget_soon
        self._psk_store = store
        self._dtls_socket.pskStore = store
        self._deadline: asyncio.TimerHandle | None = None
        self._pending: KeyIdentity | None = None
        self._written: list[bytes] = []
        self._just_connected = False
        self._final_flight: list[bytes] = []
        self._answers: dict[frozenset[bytes], list[bytes]] = {}
        self._replays_left = MAX_REPLAYS
        self._established = False
        self._key_exchange: bytes | None = None  # the first ClientKeyExchange, as received
        self._finished_lengths: frozenset[int] = frozenset()  # the client's Finished record
        self._sent_fatal = False
        self._expiry: asyncio.TimerHandle | None = None

    async def _run_retransmissions(self) -> None:
        """aiocoap's retransmission check, never sooner than ``MIN_RETRANSMIT_CHECK``."""
        when = self._dtls_socket.checkRetransmit() / upstream.DTLS_TICKS_PER_SECOND
        if when == 0:
            return
        now = time.time() - upstream.DTLS_CLOCK_OFFSET
        await asyncio.sleep(max(when - now, MIN_RETRANSMIT_CHECK))
        self._retransmission_task = asyncio.create_task(
            self._run_retransmissions(), name="DTLS server handshake retransmissions"
        )

    def _write(self, recipient: Any, data: bytes) -> int:
        self._written.append(bytes(data))
        if _Datagram.parse(data).has_plaintext_fatal_alert:
            self._sent_fatal = True
        return super()._write(recipient, data)  # type: ignore[no-any-return]

    def before_datagram(self, data: _Datagram) -> bool:
        """Answer a retransmitted client flight ourselves; True if tinydtls must not see it.

        RFC 6347 4.2.4: a peer that receives a repeated flight retransmits its
        own last flight. tinydtls instead restarts: a repeated ClientHello gets
        a *new* ServerHello with a new random, and the handshake then fails.
        So the flight tinydtls wrote in answer to each client flight is kept
        and sent again, byte for byte, when that client flight comes again.
        """
        self._written.clear()
        if not self._established and data.has_alert:
            self._alert_in_handshake()
            return True
        if not self._established and self._second_key_exchange(data):
            return True
        if self._established and self._stale_handshake(data):
            return True
        answer = self._answers.get(data.handshake_messages)
        if answer is None or self._replays_left <= 0:
            return False
        self._replay(answer)
        return True

    def _alert_in_handshake(self) -> None:
        """An alert before the handshake is done ends it (RFC 5246 7.2, RFC 6347 4.1.2.7).

        tinydtls ignores one that follows the client's ChangeCipherSpec and lets a
        later Finished complete the handshake; learning the lock's state machine
        found it (docs/testing.md). The alert's level is encrypted from epoch 1 on,
        so any alert counts: a handshake has no use for a warning either.
        """
        self._end_handshake("alert from the peer during the handshake")

    def _second_key_exchange(self, data: _Datagram) -> bool:
        """A ClientKeyExchange that is not a copy of the first ends the handshake.

        tinydtls keeps the first one's identity and ignores a later one, so
        ClientKeyExchange (valid key), ClientKeyExchange (another identity),
        ChangeCipherSpec, Finished completed under the first key: a handshake
        whose last offered identity is not the one it runs under (learning
        found it, docs/testing.md). A retransmitted flight repeats the message
        byte for byte (same message_seq) and passes.
        """
        for fragment in data.handshake_messages:
            if fragment[:1] != _CLIENT_KEY_EXCHANGE:
                continue
            if self._key_exchange is None:
                self._key_exchange = fragment
            elif fragment != self._key_exchange:
                key_id = self._pending.key_id_hex if self._pending is not None else None
                self._settle()
                self._protocol._refusal_sink(self.hostinfo, key_id, SECOND_KEY_EXCHANGE)
                self._forget_soon()
                return True
        return False

    def _stale_handshake(self, data: _Datagram) -> bool:
        """After the handshake, a handshake message is dropped unless it can be the
        client's final flight again (retransmitted because our Finished was lost; that is
        answered with our final flight, RFC 6347 4.2.4): its ClientKeyExchange byte for
        byte, or an encrypted record of its Finished's length.

        tinydtls answered any of them (a new ClientHello, a ClientKeyExchange with another
        identity, in the clear or under the session's keys) with its final flight, as if
        it were a retransmission; learning showed the lock "completing" a handshake whose
        last offered identity was not its key's. The lock does not renegotiate.
        """
        fragments = data.handshake_messages
        if fragments and fragments != {self._key_exchange}:
            return True
        return not data.encrypted_handshake_lengths <= self._finished_lengths

    def _replay(self, flight: list[bytes]) -> None:
        self._replays_left -= 1
        for datagram in flight:
            self._underlying_address.send(datagram)

    def _looked_up(self, claims: KeyIdentity) -> None:
        if self._pending is None and self._deadline is None:
            self._pending = claims
            self._deadline = asyncio.get_running_loop().call_later(
                HANDSHAKE_DEADLINE, self._handshake_failed, "no Finished from peer"
            )

    def _handshake_failed(self, why: str) -> None:
        claims, self._pending = self._pending, None
        if claims is not None:
            self._protocol._refusal_sink(
                self.hostinfo, claims.key_id_hex, f"handshake failed: wrong PSK ({why})"
            )
            self._forget_soon()

    def _forget_soon(self) -> None:
        """Drop a refused peer from the pool once tinydtls has returned.

        A refused handshake has nothing left to say; kept, it would hold a
        tinydtls context and a pool slot until evicted, and a flood of them
        would push live sessions out of the pool. Never from inside a tinydtls
        callback: the context must outlive the call that is using it.
        """
        asyncio.get_running_loop().call_soon(self._forget)

    def _expire(self) -> None:
        """The session outlived ``lock.session_seconds``: a request that comes now was
        held back (or the key host kept a session it should have closed); it opens
        nothing. The peer's next datagram finds no session; a new Open handshakes."""
        log.info("DTLS session of %s ended: its handshake is too old", self.hostinfo)
        self._forget()

    def _forget(self) -> None:
        pool = self._protocol._connections
        if pool.get(self._underlying_address.address) is self:
            self._inject_error(upstream.FatalDTLSError(_HANDSHAKE_FAILURE))

    def after_datagram(self, data: _Datagram) -> None:
        """Called once tinydtls has processed ``data`` from this peer.

        With a wrong PSK the client's Finished fails record authentication and
        tinydtls drops it silently. An epoch-1 handshake record processed while
        the handshake is still pending is exactly that Finished.
        """
        if self._pending is not None and data.encrypted_handshake_lengths:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._handshake_failed("Finished did not verify")
        elif self._just_connected:
            self._just_connected = False
            if not self._final_flight:
                # What tinydtls wrote while completing the handshake is its
                # final flight (ChangeCipherSpec, Finished).
                self._final_flight = list(self._written)
                self._finished_lengths = data.encrypted_handshake_lengths
            elif not self._written and self._replays_left > 0:
                # The client repeated its Finished: ours was lost. tinydtls
                # accepts the repeat but sends nothing, so replay it here.
                self._replay(self._final_flight)
        if self._sent_fatal:
            self._after_fatal_alert()
        messages = data.handshake_messages
        if messages and self._written and len(self._answers) < MAX_REMEMBERED_FLIGHTS:
            self._answers.setdefault(messages, list(self._written))
        self._written.clear()

    def _after_fatal_alert(self) -> None:
        """tinydtls sent a fatal alert (an unexpected message): the peer is forgotten.

        RFC 5246 7.2.2: a fatal alert ends the connection. tinydtls kept the
        peer's half-done handshake, so a later message could carry it on from
        where the alert left it (learning showed a tangle of such states); a
        peer that goes on must start a new handshake from its ClientHello.
        """
        self._sent_fatal = False
        self._end_handshake("unexpected message")

    def _end_handshake(self, why: str) -> None:
        """Fail a handshake in progress (audited if a key was offered) and drop the peer."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._pending is not None:
            self._handshake_failed(why)
        else:
            self._forget_soon()

    def _settle(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._pending = None

    def _event(self, level: int, code: int) -> None:
        if code == _EVENT_CONNECTED:
            self._just_connected = self._established = True
            self._settle()
            if self._expiry is None:
                seconds = self._protocol._session_seconds
                self._expiry = asyncio.get_running_loop().call_later(seconds, self._expire)
        elif level == _LEVEL_FATAL and code != 0 and self._pending is not None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._handshake_failed(f"alert {code}")
        elif level == 1 and code == 0:
            # close_notify as a warning: the peer ended the session politely.
            self._settle()
            self._inject_error(upstream.CloseNotifyReceived())
            return
        super()._event(level, code)

    def _inject_error(self, e: Exception) -> None:
        self._settle()
        if self._expiry is not None:  # the peer goes now: its timer must not keep it alive
            self._expiry.cancel()
        try:
            super()._inject_error(e)
        except KeyError:
            pass  # already dropped from the pool


class _PeerPool(upstream._DatagramServerSocketSimpleDTLS):
    _Address = _PeerDTLS
    max_sockets = MAX_PEERS
    _session_seconds = SESSION_SECONDS  # create_server sets lock.session_seconds

    def datagram_received(self, data: bytes, sockaddr: Any) -> None:
        records = _Datagram.parse(data)  # once: the checks before and after tinydtls share it
        if sockaddr not in self._connections:
            self._maybe_purge_sockets()
        elif self._connections[sockaddr].before_datagram(records):
            return
        super().datagram_received(data, sockaddr)
        peer = self._connections.get(sockaddr)
        if peer is not None:
            peer.after_datagram(records)


@dataclass(frozen=True)
class _Datagram:
    """What the transport's checks read from a datagram's DTLS record headers, taken in
    one walk over them; a truncated last record keeps what it has."""

    has_alert: bool  # an alert record (type 21) of any epoch
    has_plaintext_fatal_alert: bool  # an epoch-0 alert whose level is fatal
    # The epoch-0 handshake fragments without their record headers: a retransmitted
    # flight repeats these bytes exactly (only record sequence numbers change); a new
    # handshake differs at least in its random.
    handshake_messages: frozenset[bytes]
    encrypted_handshake_lengths: frozenset[int]  # handshake records of epoch 1 or later

    @classmethod
    def parse(cls, datagram: bytes) -> _Datagram:
        alert = fatal = False
        messages: set[bytes] = set()
        lengths: set[int] = set()
        offset = 0
        while offset + 13 <= len(datagram):
            kind, epoch = datagram[offset], int.from_bytes(datagram[offset + 3 : offset + 5], "big")
            end = offset + 13 + int.from_bytes(datagram[offset + 11 : offset + 13], "big")
            body = datagram[offset + 13 : end]
            if kind == 21:
                alert = True
                fatal = fatal or (epoch == 0 and body[:1] == bytes([_LEVEL_FATAL]))
            elif kind == 22 and epoch == 0:
                messages.add(body)
            elif kind == 22:
                lengths.add(len(body))
            offset = end
        return cls(alert, fatal, frozenset(messages), frozenset(lengths))


class LockDtlsServer(upstream.MessageInterfaceTinyDTLSServer):
    _serversocket = _PeerPool

    @classmethod
    async def create_server(
        cls,
        bind: tuple[str, int],
        ctx: Any,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        server_credentials: KeyDerivingCredentials,
        refusal_sink: RefusalSink,
        session_seconds: float = SESSION_SECONDS,
    ) -> LockDtlsServer:
        # aiocoap binds DTLS at the given port + 1 (the CoAP/CoAPS default gap).
        host, port = bind
        self = await super().create_server(
            (host, port - (COAPS_PORT - COAP_PORT)), ctx, log, loop, server_credentials
        )
        self._pool._refusal_sink = refusal_sink
        self._pool._session_seconds = session_seconds
        return self  # type: ignore[no-any-return]

    async def shutdown(self) -> None:
        """Forget the peers quietly, then shut down as upstream does.

        Upstream tells each remaining peer's exchanges about the shutdown through
        the message manager, which the context has already shut down: one
        warning line per peer (up to ``MAX_PEERS``) in the log of every stop.
        """
        for peer in list(self._pool._connections.values()):
            peer._retransmission_task.cancel()
        self._pool._connections.clear()
        await super().shutdown()
