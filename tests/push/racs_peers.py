"""RACS servers that misbehave, for the push's error paths: one that answers garbage, one
whose conduct a handler scripts (silent, slow, endless), and a TLS 1.0-only ``openssl
s_server`` standing in for the draft author's published binaries."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from elock_common import pki
from elock_testkit.liveserver import free_tcp_port
from tests.conftest import require_tool

POWERED_ON = b"BEGIN\r\n+008 001 SEID card-0001 has been powered on\r\nEND\r\n"


class _RacsTlsServer:
    """A TLS server with the RACS server's certificate; ``_conduct`` says what it does.

    ``close`` ends the connections still open too (a handler waiting on a read):
    the server's own close leaves them, and a task left pending when the test's
    loop stops is reported later, in some other test, as an unclosed transport.
    """

    def __init__(self, paths: pki.PkiPaths) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(paths.racs_server.cert, paths.racs_server.key)
        self.ctx.load_verify_locations(cafile=paths.racs_ca.cert)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.released = asyncio.Event()  # set at close: a handler waiting on it returns
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.released.set()
        if self._server is None:
            return
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._conduct(reader, writer)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._connections.discard(task)

    async def _conduct(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class GarbageRacs(_RacsTlsServer):
    """Answers each request block with the next of *answers* (raw bytes, whatever they
    hold), then hangs up."""

    def __init__(self, paths: pki.PkiPaths, answers: list[bytes]) -> None:
        super().__init__(paths)
        self.answers = list(answers)

    async def _conduct(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in self.answers:
            while (await reader.readline()).strip() not in (b"END", b""):
                pass
            writer.write(answer)
            await writer.drain()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Event], Awaitable[None]]


async def read_block(reader: asyncio.StreamReader) -> bool:
    """Read one request block up to its END (at most 100 lines); False at end of stream."""
    for _ in range(100):
        line = await reader.readline()
        if not line:
            return False
        if line.strip().upper().startswith(b"END"):
            return True
    return True


class HostileRacs(_RacsTlsServer):
    """*handler* does the rest (silent, slow, endless...)."""

    def __init__(self, paths: pki.PkiPaths, handler: Handler) -> None:
        super().__init__(paths)
        self.handler = handler

    async def _conduct(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.handler(reader, writer, self.released)


async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, done: asyncio.Event) -> None:
    """Take the first request block and never answer (until the server closes)."""
    await read_block(r)
    await done.wait()


def rsa_identity(directory: Path) -> tuple[Path, Path]:
    """A throwaway RSA key and self-signed certificate (AES128-SHA needs RSA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "racs-tls10")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "tls10.pem", directory / "tls10.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def tls10_only_server(directory: Path) -> Iterator[int]:
    """``openssl s_server`` speaking only TLS 1.0 with AES128-SHA, as the reference's
    published binaries do (TLSv1_method); its port while it runs."""
    cert, key = rsa_identity(directory)
    port = free_tcp_port()
    proc = subprocess.Popen(
        [require_tool("openssl"), "s_server", "-tls1", "-cipher", "AES128-SHA:@SECLEVEL=0",
         "-cert", str(cert), "-key", str(key), "-accept", f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded by the process: it prints ACCEPT or exits
            if line.startswith(b"ACCEPT"):
                break
        else:
            raise AssertionError("openssl s_server did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
