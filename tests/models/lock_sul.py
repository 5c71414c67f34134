"""SUL 3: the lock's DTLS server (tinydtls under ``lock_server/dtls_transport.py``), over UDP.

The system under learning is a real ``elock-lock serve`` process on loopback;
each query is a fresh peer (a new socket on a loopback address of its own,
127.0.0.2 onwards), which is what the lock keeps its DTLS state by. The mapper
(``LockClientMapper``) is a DTLS 1.2 PSK client built on the applet's codec:
it sends real datagrams in whatever order the learner asks and derives keys
from what it has seen, so a
ClientKeyExchange with a valid identity followed by CCS and Finished is a real
handshake, and ``APP`` is a real CoAP POST /lock. ``CKE_UNKNOWN`` offers an
identity minted for another lock (with that lock's PSK). Message sequence
numbers are fixed per message (ClientHello 0, the one with the cookie 1, CKE 2,
Finished 3), and each plain ClientHello has a new random: with counters in the
mapper the learner would count them instead of learning. ``REPEAT`` re-sends
the last flight once; a second REPEAT in a row sends nothing. The lock replays
its answer to a repeated flight from a budget of 8 per peer: with REPEAT
unbounded, the learner spends its states counting that budget down (56 states
and growing after six rounds), which says nothing about the handshake.

When is the answer complete? Waiting for silence costs a timeout per step, and
most steps are silent. Instead each step ends with probes from a second, fixed
socket: a ClientHello without a cookie, which tinydtls answers statelessly with
a HelloVerifyRequest. The lock is one asyncio loop, so once two probes in a
row came back with nothing new for the learner's socket, the lock has handled
the input and whatever it scheduled for it (the CoAP response is a task;
handshake records are answered synchronously, and one quiet probe does).
The relay is watched through the simulated relay's log (``RELAY_ON``).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

from aalpy.base import SUL

from elock_common import LockSecret
from elock_common.keys import mint_key
from firmware.coap_message import MessageType, Method, decode_message, encode_request
from firmware.dtls.fragments import pull_fragments, push_handshake
from firmware.dtls.messages import (
    CLIENT_HELLO,
    CLIENT_KEY_EXCHANGE,
    FINISHED,
    ClientHello,
    ClientKeyExchange,
    pull_hello_verify_request,
    pull_server_hello,
    push_client_hello,
    push_client_key_exchange,
)
from firmware.dtls.records import CT_APPLICATION_DATA, CT_HANDSHAKE, CcmProtection
from tests.models.dtls_wire import (
    CT_ALERT,
    CT_CHANGE_CIPHER_SPEC,
    Seen,
    Session,
    Writer,
    join,
    read_datagram,
    token,
)
from tests.models.properties import CONNECTED, RELAY_ON, Spec

ALPHABET = ["CH", "CH_COOKIE", "CKE", "CKE_UNKNOWN", "CCS", "FIN", "APP", "ALERT", "REPEAT"]
SMALL_ALPHABET = ["CH", "CH_COOKIE", "CKE", "CCS", "FIN", "APP"]
SPEC = Spec(
    happy_path=("CH_COOKIE", "CKE", "CCS", "FIN"),
    alert_inputs=frozenset({"ALERT"}),
    repeat_input="REPEAT",
    valid_identity=frozenset({"CKE"}),
    unknown_identity=frozenset({"CKE_UNKNOWN"}),
    authorized_request="APP",
)
PROBE_TIMEOUT = 3.0  # a lock that does not answer a HelloVerifyRequest in this is broken


SETTLE_SECONDS = 0.05  # see LockSul.step
ANSWER_SECONDS = 2.0  # a request on a session the lock finished: its answer is due (CON)


class LockClientMapper:
    def __init__(self, key: tuple[bytes, bytes], stranger: tuple[bytes, bytes]) -> None:
        self.key, self.stranger = key, stranger
        self.session = Session(key[1])
        self.writer = Writer()
        self.random = os.urandom(32)
        self.cookie = b""
        self.client_hello = b""
        self.coap_id = 1
        self.server_read: CcmProtection | None = None
        self.repeated = False  # REPEAT re-sends a flight once (see the module docstring)
        self.connected = False  # the lock's Finished came: its keys stay what they were

    def _handshake(self, msg_type: int, body: bytes, message_seq: int) -> bytes:
        message = push_handshake(msg_type, message_seq, body)
        if msg_type == CLIENT_HELLO:
            self.session.client_random = self.random
            self.session.restart(message)
            self.client_hello = message
        else:
            self.session.add(message)
        return self.writer.send([(CT_HANDSHAKE, message)])

    def concrete(self, letter: str) -> bytes:
        if letter != "REPEAT":
            self.repeated = False
        s = self.session
        if letter == "CH":  # a new handshake: new random, message_seq 0
            self.random = os.urandom(32)
            return self._handshake(CLIENT_HELLO, push_client_hello(ClientHello(self.random)), 0)
        if letter == "CH_COOKIE":  # the second ClientHello of RFC 6347 4.2.1
            hello = ClientHello(self.random, self.cookie)
            return self._handshake(CLIENT_HELLO, push_client_hello(hello), 1)
        if letter in ("CKE", "CKE_UNKNOWN"):
            identity, psk = self.key if letter == "CKE" else self.stranger
            if self.connected:  # keys are settled; a late CKE must not re-derive them
                return self._handshake(
                    CLIENT_KEY_EXCHANGE, push_client_key_exchange(ClientKeyExchange(identity)), 2
                )
            s.psk = psk
            data = self._handshake(
                CLIENT_KEY_EXCHANGE, push_client_key_exchange(ClientKeyExchange(identity)), 2
            )
            s.derive()
            return data
        if letter == "CCS":
            data = self.writer.send([(CT_CHANGE_CIPHER_SPEC, b"\x01")])
            self.writer.change_cipher_spec(s.protection(client=True))
            return data
        if letter == "FIN":
            return self._handshake(FINISHED, s.verify_data(b"client finished"), 3)
        if letter == "APP":
            self.coap_id += 1
            request = encode_request(Method.POST, self.coap_id, b"\x19", ["lock"])
            return self.writer.send([(CT_APPLICATION_DATA, request)])
        if letter == "ALERT":
            return self.writer.send([(CT_ALERT, b"\x02\x28")])
        if letter == "REPEAT":
            repeated, self.repeated = self.repeated, True
            return self.writer.repeat() if self.writer.last_flight and not repeated else b""
        raise ValueError(letter)

    def observe(self, datagram: bytes) -> list[str]:
        out: list[str] = []
        for seen in read_datagram(datagram, lambda epoch: self.server_read):
            out += self._seen(seen)
        return out

    def _seen(self, seen: Seen) -> list[str]:
        s = self.session
        ct = seen.record.content_type
        if ct == CT_CHANGE_CIPHER_SPEC and s.keys is not None and not self.connected:
            self.server_read = s.protection(client=False)
        if ct == CT_APPLICATION_DATA and seen.payload is not None:
            try:
                message = decode_message(seen.payload)
            except Exception:
                return ["APP(not CoAP)"]
            if message.type == MessageType.ACK and message.code == 0:
                # An empty ACK announces a separate response (RFC 7252 5.2.2): whether the
                # answer comes piggybacked or separate is the machine's load, not its state.
                return []
            return [f"APP({message.code_string})"]
        names = token(seen)
        if ct != CT_HANDSHAKE or seen.payload is None:
            return names
        for fragment in pull_fragments(seen.payload):
            whole = push_handshake(fragment.msg_type, fragment.message_seq, fragment.data)
            if fragment.msg_type == 3:
                self.cookie = pull_hello_verify_request(fragment.data).cookie
            elif fragment.msg_type == 2:  # the hash restarts: a server may start over
                hello = pull_server_hello(fragment.data)
                s.restart(self.client_hello)
                s.server_random = hello.random
                s.extended_master_secret = hello.extended_master_secret
                s.add(whole)
            elif fragment.msg_type == FINISHED:
                # The lock's Finished again (its answer to a retransmitted flight) is the
                # same session's replay, not a second completion: no CONNECTED for it.
                if not self.connected:
                    names.append(CONNECTED)
                self.connected = True
            else:
                s.add(whole)
        return names


class LockSul(SUL):  # type: ignore[misc]
    """Fresh peer per query; ``relay_log`` is the simulated relay's log file."""

    def __init__(self, port: int, key: tuple[bytes, bytes], relay_log: Path) -> None:
        super().__init__()
        self.address = ("127.0.0.1", port)
        self.key = key
        other = LockSecret.generate()
        _, minted = mint_key(other)
        self.stranger = (minted.identity, minted.psk)
        self.relay_log = relay_log
        self.probe = _udp("127.0.0.1")
        self.peer: socket.socket | None = None
        self._peers = 0
        self.mapper = LockClientMapper(key, self.stranger)

    def _next_address(self) -> str:
        """127.0.0.2 onwards: a source address the lock has never seen, for every query.

        Ports alone would not do: the kernel hands a closed port out again, and the
        lock still holds that peer's DTLS session and CoAP deduplication state.
        """
        self._peers += 1
        n = self._peers
        return f"127.{n // 62500 % 250}.{n // 250 % 250}.{n % 250 + 2}"

    def close(self) -> None:
        self.probe.close()
        if self.peer is not None:
            self.peer.close()

    def pre(self) -> None:
        # One key serves every query, and a key that taps again while the door is still open
        # from its own last open gets "opened" without moving the relay (lock_server.service):
        # so a query starts only once the door has closed again.
        self._wait_for_the_door()
        self.peer = _udp(self._next_address())
        self.mapper = LockClientMapper(self.key, self.stranger)

    def post(self) -> None:
        if self.peer is not None:
            self.peer.close()
            self.peer = None

    def _relay_count(self, event: str) -> int:
        try:
            return self.relay_log.read_text().count(event)
        except FileNotFoundError:
            return 0

    def _door_open(self) -> bool:
        try:
            lines = self.relay_log.read_text().split()
        except FileNotFoundError:
            return False
        return bool(lines) and lines[-1] == "on"

    def _relay_ons(self) -> int:
        return self._relay_count(" on")

    def step(self, letter: str | None) -> str:
        assert letter is not None and self.peer is not None
        ons = self._relay_ons()
        data = self.mapper.concrete(letter)
        if data:
            self.peer.sendto(data, self.address)
        out: list[str] = []
        # Handshake records are answered within datagram_received; a CoAP request is
        # answered by a task, so it gets a second quiet probe.
        needed = 2 if letter in ("APP", "REPEAT") else 1
        # An open commits its audit row in the lock's writer thread before the relay moves
        # and the answer leaves: give a request that got no answer yet a little longer, or
        # its RELAY_ON would land in the next query (AALpy then sees non-determinism).
        # On a session whose handshake the lock finished, a confirmable request is owed an
        # answer (RFC 7252 4.2): wait for it up to ANSWER_SECONDS, so that a loaded machine
        # delays the answer instead of moving it into the next query.
        request = letter in ("APP", "REPEAT")
        wait = ANSWER_SECONDS if request and self.mapper.connected else SETTLE_SECONDS
        settle = time.monotonic() + (wait if request else 0.0)
        quiet_probes = 0
        while quiet_probes < needed or (not out and time.monotonic() < settle):
            self._probe()
            got = _drain(self.peer)
            quiet_probes = 0 if got else quiet_probes + 1
            for datagram in got:
                out += self.mapper.observe(datagram)
        if self._relay_ons() > ons:
            out.append(RELAY_ON)
            self._wait_for_the_door()
        return join(out)

    def _wait_for_the_door(self) -> None:
        """The relay's open time is a clock, not a handshake state: a step that ends while
        the door is open would make the next request's answer depend on how long the steps
        in between took (an open door is "opened" again without moving the relay). So each
        step that opens it also waits for it to close, and every authorized request moves
        the relay (docs/testing.md)."""
        deadline = time.monotonic() + 5
        while self._door_open():
            if time.monotonic() > deadline:
                raise TimeoutError("the lock's door did not close")
            time.sleep(0.01)

    def _probe(self) -> None:
        hello = push_client_hello(ClientHello(os.urandom(32)))
        record = struct.pack("!BHH6sH", 22, 0xFEFD, 0, bytes(6), 12 + len(hello))
        self.probe.sendto(record + push_handshake(CLIENT_HELLO, 0, hello), self.address)
        self.probe.settimeout(PROBE_TIMEOUT)
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            answer = self.probe.recv(4096)
            if answer[:1] == b"\x16":
                _drain(self.probe)
                return
        raise TimeoutError("the lock did not answer a probe")


def _udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def _drain(sock: socket.socket) -> list[bytes]:
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return out
