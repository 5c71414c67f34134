"""Peers we did not write, and the hosts that carry datagrams to them.

- ``TinyDtlsServer``: tinydtls (the DTLSSocket package, as the lock uses it) as a DTLS
  server object with no socket; datagrams are shuttled in memory.
- ``CoapResponder``: answers CoAP requests with aiocoap's codec (not ours).
- ``LibcoapServer``: libcoap's example ``coap-server-openssl`` / ``coap-server-gnutls``
  as a process on a free loopback port.
- ``run_in_memory`` and ``run_udp``: the key host's loop, counting exchanges (one
  exchange = one APDU: all datagrams that arrived go in, datagrams to send come out).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from DTLSSocket import dtls

from elock_testkit.procs import terminate

PEER_ADDR = ("::ffff:127.0.0.1", 5000)
EVENT_CONNECTED = 0x01DE


class Server(Protocol):
    def receive(self, datagram: bytes) -> None: ...
    def take(self) -> list[bytes]: ...
    def send_deferred(self) -> bool: ...


class Host(Protocol):
    """What OpenSession and DtlsClient share: the sans-I/O surface a host drives."""

    def connect(self, now: float) -> None: ...
    def receive_datagram(self, data: bytes, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[bytes]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


class TinyDtlsServer:
    """A tinydtls DTLS server with PSK, driven by hand, no sockets."""

    def __init__(self, identity: bytes, psk: bytes, responder: CoapResponder | None = None) -> None:
        self.outbox: list[bytes] = []
        self.received: list[bytes] = []
        self.events: list[int] = []
        self.responder = responder
        self._dtls = dtls.DTLS(
            read=self._read,
            write=self._write,
            event=self._event,
            pskId=b"",
            pskStore={identity: psk},
        )
        self._session = dtls.Session(*PEER_ADDR)

    def _read(self, addr: Any, data: bytes) -> int:
        self.received.append(bytes(data))
        if self.responder is not None:
            answer = self.responder(bytes(data))
            if answer is not None:
                self._dtls.write(self._session, answer)
        return len(data)

    def _write(self, addr: Any, data: bytes) -> int:
        self.outbox.append(bytes(data))
        return len(data)

    def _event(self, level: int, code: int) -> None:
        self.events.append(code)

    @property
    def connected(self) -> bool:
        return EVENT_CONNECTED in self.events

    def receive(self, datagram: bytes) -> None:
        self._dtls.handleMessageAddr(PEER_ADDR[0], PEER_ADDR[1], datagram)

    def take(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def send(self, data: bytes) -> None:
        self._dtls.write(self._session, data)

    def send_deferred(self) -> bool:
        """Send one separate response the responder held back; False if none."""
        if self.responder is None or not self.responder.pending_separate:
            return False
        self.send(self.responder.pending_separate.pop(0))
        return True


class CoapResponder:
    """A CoAP 'door' with aiocoap's codec: answers POST /open with 2.04, piggybacked
    (or with an empty ACK and then a separate CON response when ``separate``)."""

    def __init__(self, *, separate: bool = False, payload: bytes = b"opened") -> None:
        self.separate = separate
        self.payload = payload
        self.requests: list[aiocoap.Message] = []
        self.pending_separate: list[bytes] = []

    def __call__(self, data: bytes) -> bytes | None:
        message = aiocoap.Message.decode(data)
        if message.mtype in (Type.ACK, Type.RST):
            return None
        self.requests.append(message)
        code = Code.CHANGED if message.opt.uri_path == ("open",) else Code.NOT_FOUND
        response = aiocoap.Message(code=code, payload=self.payload)
        response.token = message.token
        if self.separate:
            empty = aiocoap.Message(code=Code.EMPTY)
            empty.mtype, empty.mid = Type.ACK, message.mid
            response.mtype, response.mid = Type.CON, (message.mid + 1) & 0xFFFF
            self.pending_separate.append(response.encode())
            return bytes(empty.encode())
        response.mtype, response.mid = Type.ACK, message.mid
        return bytes(response.encode())


# Which datagrams to lose: indices (0-based, per direction), or a predicate.
DropSpec = Collection[int] | Callable[[int, bytes], bool]


def _dropped(spec: DropSpec, index: int, datagram: bytes) -> bool:
    return spec(index, datagram) if callable(spec) else index in spec


class drop_first:  # noqa: N801 - used like a function
    """A predicate that loses the first ``count`` datagrams that ``match``."""

    def __init__(self, count: int, match: Callable[[bytes], bool]) -> None:
        self.remaining = count
        self.match = match

    def __call__(self, index: int, datagram: bytes) -> bool:
        if self.remaining > 0 and self.match(datagram):
            self.remaining -= 1
            return True
        return False


def record_headers(datagram: bytes) -> list[tuple[int, int, int]]:
    """(content type, epoch, sequence number) of each record in a datagram."""
    out = []
    pos = 0
    while pos + 13 <= len(datagram):
        header = datagram[pos : pos + 13]
        out.append(
            (header[0], int.from_bytes(header[3:5], "big"), int.from_bytes(header[5:11], "big"))
        )
        pos += 13 + int.from_bytes(header[11:13], "big")
    return out


@dataclass
class HostRun:
    events: list[Any] = field(default_factory=list)
    exchanges: int = 0
    sent: list[bytes] = field(default_factory=list)  # every datagram the client produced
    delivered: list[bytes] = field(default_factory=list)  # what reached the client


def _terminal(event: Any) -> bool:
    return type(event).__name__ in {
        "OpenResult",
        "OpenFailed",
        "ConnectionTerminated",
        "HandshakeCompleted",
    }


def _send_flight(
    client: Host,
    now: float,
    run: HostRun,
    drop_out: DropSpec,
    out_index: int,
    deliver: Callable[[bytes], object],
) -> int:
    """Send what the client has due at ``now``, losing the ``drop_out`` ones; the next index."""
    for datagram in client.datagrams_to_send(now):
        run.sent.append(datagram)
        if not _dropped(drop_out, out_index, datagram):
            deliver(datagram)
        out_index += 1
    return out_index


def _ended(run: HostRun, next_event: Callable[[], Any], stop: Callable[[Any], bool]) -> bool:
    """Collect the client's events; whether the last one ends the run."""
    while (event := next_event()) is not None:
        run.events.append(event)
    return bool(run.events) and stop(run.events[-1])


def _kept(datagrams: list[bytes], drop_in: DropSpec, in_index: int) -> tuple[list[bytes], int]:
    """The datagrams that reach the client (the ``drop_in`` ones lost), and the next index."""
    kept = []
    for datagram in datagrams:
        if not _dropped(drop_in, in_index, datagram):
            kept.append(datagram)
        in_index += 1
    return kept, in_index


def run_in_memory(
    client: Host,
    server: Server,
    *,
    next_event: Callable[[], Any],
    drop_out: DropSpec = (),
    drop_in: DropSpec = (),
    stop: Callable[[Any], bool] = _terminal,
    max_exchanges: int = 60,
) -> HostRun:
    """Shuttle datagrams between client and server on a virtual clock.

    ``drop_out`` / ``drop_in`` are indices (0-based, in order) of client->server and
    server->client datagrams to lose. Time only moves when the client's timer is due.
    """
    run = HostRun()
    now = 0.0
    out_index = in_index = 0
    client.connect(now)
    run.exchanges = 1
    while run.exchanges <= max_exchanges:
        out_index = _send_flight(client, now, run, drop_out, out_index, server.receive)
        if _ended(run, next_event, stop):
            return run
        outbox = server.take()
        if not outbox and server.send_deferred():
            outbox = server.take()
        arrived, in_index = _kept(outbox, drop_in, in_index)
        run.exchanges += 1
        if arrived:
            for datagram in arrived:
                run.delivered.append(datagram)
                client.receive_datagram(datagram, now)
        else:
            timer = client.get_timer()
            if timer is None:
                raise AssertionError("client idle with no timer and nothing to read")
            now = max(now, timer)
            client.handle_timer(now)
    raise AssertionError(f"no end after {max_exchanges} exchanges: {run.events}")


def free_port_pair() -> int:
    """A port P with P and P+1 free for UDP and TCP (libcoap binds DTLS on P+1)."""
    rng = random.Random()
    for _ in range(50):
        port = rng.randrange(20000, 60000, 2)
        with contextlib.ExitStack() as stack:
            try:
                for p in (port, port + 1):
                    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                        s = stack.enter_context(socket.socket(socket.AF_INET, kind))
                        s.bind(("127.0.0.1", p))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


class LibcoapServer:
    """libcoap's example server on loopback; ``dtls_port`` is where coaps:// goes."""

    def __init__(self, tool: str, psk: str, extra: tuple[str, ...] = (), log: str = "") -> None:
        self.tool = tool
        self.port = free_port_pair()
        self.dtls_port = self.port + 1
        with open(log or os.devnull, "w") as out:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [tool, "-A", "127.0.0.1", "-p", str(self.port), "-k", psk, "-v", "3", *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Ping the plain CoAP port (CON Empty) until the server answers RST."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.05)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.tool} exited: {self.proc.stderr!r}")
                sock.sendto(bytes.fromhex("40001234"), ("127.0.0.1", self.port))
                try:
                    if sock.recv(64)[:1] == b"\x70":
                        return
                except OSError:
                    time.sleep(0.02)
        raise RuntimeError(f"{self.tool} did not start")

    def stop(self) -> None:
        terminate(self.proc, 2)


@contextlib.contextmanager
def libcoap_server(
    tool: str, psk: str, extra: tuple[str, ...] = (), log: str = ""
) -> Iterator[LibcoapServer]:
    server = LibcoapServer(tool, psk, extra, log)
    try:
        yield server
    finally:
        server.stop()


def run_udp(
    client: Host,
    address: tuple[str, int],
    *,
    next_event: Callable[[], Any],
    drop_out: DropSpec = (),
    drop_in: DropSpec = (),
    stop: Callable[[Any], bool] = _terminal,
    deadline: float = 10.0,
    quiet: float = 0.03,
) -> HostRun:
    """The key host over a real UDP socket, on the real clock.

    One exchange: wait for a datagram (or the client's timer), then gather every
    datagram that follows within ``quiet`` seconds, hand them all in, send what
    comes out. ``drop_out`` / ``drop_in`` lose datagrams by index, as above.
    """
    run = HostRun()
    out_index = in_index = 0
    end = time.monotonic() + deadline
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        client.connect(time.monotonic())
        run.exchanges = 1
        while True:
            out_index = _send_flight(client, time.monotonic(), run, drop_out, out_index, sock.send)
            if _ended(run, next_event, stop):
                return run
            now = time.monotonic()
            if now > end:
                raise AssertionError(f"no end within {deadline} s: {run.events}")
            timer = client.get_timer()
            wait = min(end, timer if timer is not None else end) - now
            arrived: list[bytes] = []
            sock.settimeout(max(wait, 0.001))
            with contextlib.suppress(TimeoutError, BlockingIOError):
                arrived.append(sock.recv(4096))
                sock.settimeout(quiet)
                while True:
                    arrived.append(sock.recv(4096))
            kept, in_index = _kept(arrived, drop_in, in_index)
            if kept:
                run.exchanges += 1
                for datagram in kept:
                    run.delivered.append(datagram)
                    client.receive_datagram(datagram, time.monotonic())
            elif timer is not None and time.monotonic() >= timer:
                run.exchanges += 1
                client.handle_timer(time.monotonic())


def refragment(datagram: bytes, size: int) -> list[bytes]:
    """Split each plaintext handshake message of a datagram into ``size``-byte fragments,
    one record (and one datagram) per fragment, as a server with a tiny MTU would."""
    out: list[bytes] = []
    pos = 0
    while pos < len(datagram):
        header = datagram[pos : pos + 13]
        length = int.from_bytes(header[11:13], "big")
        fragment = datagram[pos + 13 : pos + 13 + length]
        pos += 13 + length
        if header[0] != 22 or header[3:5] != b"\0\0":
            out.append(header + fragment)
            continue
        hpos = 0
        while hpos < len(fragment):
            msg_type, msg_len, msg_seq = (
                fragment[hpos],
                fragment[hpos + 1 : hpos + 4],
                fragment[hpos + 4 : hpos + 6],
            )
            body_len = int.from_bytes(fragment[hpos + 9 : hpos + 12], "big")
            body = fragment[hpos + 12 : hpos + 12 + body_len]
            hpos += 12 + body_len
            for offset in range(0, max(len(body), 1), size):
                piece = body[offset : offset + size]
                hs = (
                    bytes([msg_type])
                    + msg_len
                    + msg_seq
                    + offset.to_bytes(3, "big")
                    + len(piece).to_bytes(3, "big")
                    + piece
                )
                out.append(header[:11] + len(hs).to_bytes(2, "big") + hs)
    return out


def _hs(msg_type: int, seq: int, body: bytes) -> bytes:
    n = len(body).to_bytes(3, "big")
    return bytes([msg_type]) + n + seq.to_bytes(2, "big") + b"\0\0\0" + n + body


class ScriptedServer:
    """A deterministic DTLS-PSK server for corruption tests, written on our record layer.

    It is NOT evidence of interoperability (tinydtls and libcoap are); it exists to
    reach every client state one message at a time and to send what real servers
    never send: a wrong Finished, a bad cipher suite, an unknown extension. Each
    handshake message goes in its own datagram. ``mutate`` may rewrite a message body
    by (msg_type, body) before it is sent.
    """

    def __init__(
        self,
        identity: bytes,
        psk: bytes,
        *,
        hint: bytes | None = b"hint",
        hello_verify: bool = True,
        mutate: Callable[[int, bytes], bytes] | None = None,
        responder: Callable[[bytes], bytes | None] | None = None,
    ) -> None:
        from firmware.dtls import records as r

        self.responder = responder
        self.received: list[bytes] = []

        self.r = r
        self.identity, self.psk, self.hint = identity, psk, hint
        self.hello_verify = hello_verify
        self.mutate = mutate or (lambda msg_type, body: body)
        self.outbox: list[bytes] = []
        self.seq = {0: 0, 1: 0}
        self.msg_seq = 0
        self.transcript = b""
        self.client_random = b""
        self.server_random = bytes(range(32))
        self.write: Any = None
        self.read: Any = None
        self.master = b""
        self.connected = False

    def take(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def send_deferred(self) -> bool:
        pending = getattr(self.responder, "pending_separate", None)
        if not pending:
            return False
        self.send(pending.pop(0))
        return True

    def send(self, data: bytes) -> None:
        """Application data to the client, sealed in epoch 1."""
        self._send(23, 1, data)

    def _send(self, content_type: int, epoch: int, payload: bytes) -> None:
        r = self.r
        seq = self.seq[epoch]
        self.seq[epoch] += 1
        if epoch:
            payload = self.write.seal(content_type, r.DTLS_1_2, epoch, seq, payload)
        self.outbox.append(r.encode_record(r.Record(content_type, r.DTLS_1_2, epoch, seq, payload)))

    def _send_message(self, msg_type: int, body: bytes, epoch: int = 0) -> None:
        message = _hs(msg_type, self.msg_seq, self.mutate(msg_type, body))
        self.msg_seq += 1
        if msg_type != 3:
            self.transcript += message
        self._send(22, epoch, message)

    def receive(self, datagram: bytes) -> None:
        r = self.r
        for record in r.parse_records(datagram, 20000):
            payload = record.fragment
            if record.epoch == 1:
                payload = self.read.open(record)
            if record.content_type == 22:
                self._on_message(payload, record.epoch)
            elif record.content_type == 23 and record.epoch == 1:
                self.received.append(payload)
                answer = self.responder(payload) if self.responder else None
                if answer is not None:
                    self.send(answer)

    def _on_message(self, message: bytes, epoch: int) -> None:
        r = self.r
        msg_type, body = message[0], message[12:]
        if msg_type == 1:  # ClientHello
            self.client_random = body[2:34]
            cookie_len = body[35 + body[34]]
            if self.hello_verify and cookie_len == 0:
                self.msg_seq = 0
                self._send_message(3, b"\xfe\xff" + bytes([6]) + b"cookie")
                return
            self.transcript = message
            self.msg_seq = int.from_bytes(message[4:6], "big")
            ext = bytes.fromhex("0017 0000 ff01 0001 00")
            self._send_message(
                2,
                b"\xfe\xfd"
                + self.server_random
                + b"\x00"
                + b"\xc0\xa8\x00"
                + len(ext).to_bytes(2, "big")
                + ext,
            )
            if self.hint is not None:
                self._send_message(12, len(self.hint).to_bytes(2, "big") + self.hint)
            self._send_message(14, b"")
        elif msg_type == 16:  # ClientKeyExchange
            assert body[2:] == self.identity
            self.transcript += message
            premaster = r.psk_premaster_secret(self.psk)
            self.master = r.extended_master_secret(premaster, r.sha256(self.transcript))
            keys = r.KeyBlock.derive(self.master, self.client_random, self.server_random)
            self.write = r.CcmProtection(keys.server_write_key, keys.server_write_iv)
            self.read = r.CcmProtection(keys.client_write_key, keys.client_write_iv)
        elif msg_type == 20 and epoch == 1:  # client Finished
            expected = r.finished_verify_data(
                self.master, b"client finished", r.sha256(self.transcript)
            )
            assert body == expected, "client Finished does not verify"
            self.transcript += message
            verify = r.finished_verify_data(
                self.master, b"server finished", r.sha256(self.transcript)
            )
            self._send(20, 0, b"\x01")
            self._send_message(20, verify, epoch=1)  # message_seq continues after ServerHelloDone
            self.connected = True
