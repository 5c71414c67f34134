"""A small asyncio RACS client, for the key server's tunnel and for tests.

One request block out, one response block back. Every command is sent with
``APPEND`` so that the server keeps each command's line (without it, a line
is replaced by the next command's), and any ``-CYZ`` line becomes a
:class:`~racs.errors.RemoteRacsError` carrying the server's code and reason.

APDUs ask for chained answers in the protocol's own words: ``MORE=61
FETCH=00C00000`` by default, because a server need not fetch a ``61xx``
answer unless asked (the draft author's server does not, ours does); see
docs/racs.md, "Interoperability". Whatever a server does, the caller may still
get ``61xx``/``6Cxx`` back and follow it (``elock_common.apdu.ResponseChain``).
Reading is bounded like the server's: a response line longer than
``max_line`` is an error, not a reason to buffer forever.

Errors are types, h11's split: :class:`LocalProtocolError` when this process
misuses the client, :class:`RemoteProtocolError` when the server's answer is
not RACS (any malformed line, hex or byte), :class:`RemoteRacsError` for an
error line (:class:`SecureElementBusyError` when another session holds the
SE), :class:`TlsVersionError` when the server offers only TLS below 1.2.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from elock_common.apdu import GET_RESPONSE_HEADER, SW1_MORE_DATA
from racs.errors import (
    CommandCode,
    ErrorClass,
    LocalProtocolError,
    RemoteProtocolError,
    RemoteRacsError,
    SecureElementBusyError,
    TlsVersionError,
)
from racs.protocol import CRLF, ResponseLine, parse_response_line
from racs.tls_probe import probe

# What the client raises is part of its published interface: callers import it from here.
__all__ = [
    "ErrorClass",
    "LocalProtocolError",
    "RacsClient",
    "RemoteProtocolError",
    "RemoteRacsError",
    "SecureElementBusyError",
    "TlsVersionError",
    "apdu_options",
    "client_ssl_context",
]


# What OpenSSL says when the server will not speak TLS 1.2 or 1.3.
_OLD_TLS = {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER"}


def client_ssl_context(cert: Path, key: Path, server_ca: Path) -> ssl.SSLContext:
    """TLS 1.2+ with our certificate (its CN is our RACS user id), checking the server's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=server_ca)
    return ctx


class RacsClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()  # one block in flight per connection
        self._blocks = 0

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        timeout: float = 30.0,
        max_line: int = 1 << 20,
    ) -> RacsClient:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ssl_context, server_hostname=server_hostname or host,
                    limit=max_line,
                )  # fmt: skip
        except ssl.SSLError as err:
            if err.reason not in _OLD_TLS:
                raise
            version = await probe(host, port, min(timeout, 5.0))
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise TlsVersionError(shown, version or "a TLS version below 1.2") from err
        return cls(reader, writer)

    async def __aenter__(self) -> RacsClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(5):
                await self._writer.wait_closed()
        except (OSError, ssl.SSLError, TimeoutError):
            pass

    async def request(self, commands: Sequence[str], label: str = "") -> list[ResponseLine]:
        """Send one BEGIN..END block; the server's lines, or RemoteRacsError."""
        if any("\n" in c or "\r" in c for c in commands):
            raise LocalProtocolError("a RACS command is one line")
        async with self._lock:
            self._blocks += 1
            label = label or f"b{self._blocks}"
            block = [f"BEGIN {label}", *commands, "END"]
            self._writer.write(CRLF.join(block).encode("ascii") + CRLF.encode())
            await self._writer.drain()
            lines = await self._response(label, max(len(commands), 1))
        for line in lines:
            if not line.ok:
                raise RemoteRacsError.from_line(line.code, line.index, line.text)
        _check_answers(commands, lines)
        return lines

    async def _response(self, label: str, most: int) -> list[ResponseLine]:
        """One response block to the block *label*: at most *most* lines, one per command.

        With ``APPEND`` on every command a server keeps one line per command and
        no more, so a longer answer is not RACS; reading it to its end would
        let a server fill this process's memory.
        """
        head, _, echoed = (await self._line()).partition(" ")
        if head != "BEGIN":
            raise RemoteProtocolError(f"expected BEGIN, got {(head + ' ' + echoed)[:80]!r}")
        if echoed and echoed != label:
            raise RemoteProtocolError(f"the answer to block {echoed[:80]!r}, not to {label!r}")
        lines: list[ResponseLine] = []
        while (text := await self._line()) != "END":
            if len(lines) == most:
                raise RemoteProtocolError(f"more lines than the {most} commands sent")
            lines.append(parse_response_line(text))
        return lines

    async def _line(self) -> str:
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise RemoteProtocolError("a response line longer than the limit") from None
        except asyncio.IncompleteReadError as err:
            if err.partial:
                raise RemoteProtocolError("the server closed in the middle of a line") from None
            raise ConnectionResetError("the RACS server closed the connection") from None
        try:
            return raw.decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"a response line is not ASCII: {raw[:40]!r}") from None

    async def _one(self, command: str) -> str:
        lines = await self.request([command])
        if not lines:
            raise RemoteProtocolError(f"no answer to {command.split(' ')[0]}")
        return lines[-1].text

    async def get_version(self) -> str:
        return await self._one("GET-VERSION")

    async def echo(self, text: str) -> str:
        return await self._one(f"ECHO {text}")

    async def list_seids(self) -> list[str]:
        return (await self._one("LIST")).split()

    async def power_on(self, seid: str) -> str:
        return await self._one(f"POWERON {seid}")

    async def reset(self, seid: str, warm: bool = False) -> str:
        return await self._one(f"RESET {seid}" + (" WARM" if warm else ""))

    async def shutdown(self, seid: str) -> str:
        return await self._one(f"SHUTDOWN {seid}")

    async def apdu(
        self,
        seid: str,
        apdu: bytes,
        expect_sw: int | None = None,
        *,
        more: int | None = SW1_MORE_DATA,
        fetch: bytes | None = GET_RESPONSE_HEADER,
    ) -> bytes:
        """One command APDU; the response (body || SW) as the server gave it."""
        return (await self.script(seid, [apdu], expect_sw, more=more, fetch=fetch))[0]

    async def script(
        self,
        seid: str,
        apdus: Sequence[bytes],
        expect_sw: int | None = None,
        *,
        more: int | None = SW1_MORE_DATA,
        fetch: bytes | None = GET_RESPONSE_HEADER,
    ) -> list[bytes]:
        """Several APDUs in one block (one round trip); stops at the first error.

        *more* and *fetch* become ``MORE=`` and ``FETCH=`` on every APDU (None
        leaves the option out: the server's default then decides), *expect_sw*
        becomes ``CONTINUE=`` (the final status word the server must see).
        """
        options = apdu_options(expect_sw=expect_sw, more=more, fetch=fetch)
        lines = [f"APDU {seid} {a.hex().upper()}{options} APPEND" for a in apdus]
        answers = await self.request(lines)
        if len(answers) != len(apdus):
            raise RemoteProtocolError(f"{len(answers)} answers to {len(apdus)} APDUs")
        try:
            return [bytes.fromhex(r.text) for r in answers]
        except ValueError:
            raise RemoteProtocolError("an APDU answer that is not hex") from None


def _check_answers(commands: Sequence[str], lines: Sequence[ResponseLine]) -> None:
    """Each success line answers the command it says: its line number and its command code.

    A server that numbers or codes its lines otherwise (an answer meant for
    another request, a repeated line, a success for a command never sent) is
    not giving the answers to this block.
    """
    for index, (command, line) in enumerate(zip(commands, lines, strict=False), start=1):
        if line.index != index:
            raise RemoteProtocolError(f"the answer to line {index} is numbered {line.index}")
        name = command.split(" ")[0].upper()
        code = CommandCode.__members__.get(name.replace("-", "_"))
        if code is not None and line.code != f"+0{int(code):02d}":
            raise RemoteProtocolError(f"a {line.code} line answers {name}")


def apdu_options(
    *, expect_sw: int | None = None, more: int | None = None, fetch: bytes | None = None
) -> str:
    """The APDU options as the draft spells them, each preceded by a space."""
    if fetch is not None and len(fetch) != 4:
        raise LocalProtocolError("FETCH= is a 4-byte APDU header")
    if more is not None and not 0 <= more <= 0xFF:
        raise LocalProtocolError("MORE= is one status byte")
    out = f" CONTINUE={expect_sw:04X}" if expect_sw is not None else ""
    out += f" MORE={more:02X}" if more is not None else ""
    return out + (f" FETCH={fetch.hex().upper()}" if fetch is not None else "")
