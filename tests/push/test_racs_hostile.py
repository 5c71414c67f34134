"""A hostile or broken RACS server cannot hold, flood or crash a push (docs/racs.md).

The key server talks to RACS servers it does not run. Whatever one does after
TLS#1 (answer never, a byte at a time, without end, with a number no int can
hold, with an error text of its own making, with lines for commands never
sent), the push must end within its ``timeout`` with a typed ``PushError``
whose reason is short and printable: the worker records that as the key's
``last_error`` and retries.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from elock_common import pki
from elock_push import Install, PushError, RacsProtocolError, SecureElementPush, TransportError
from elock_testkit.push_harness import door_key, pusher_for
from tests.push.conftest import SEID
from tests.push.racs_peers import POWERED_ON, Handler, HostileRacs, read_block, silent

KEY = door_key("Front door", "coaps://127.0.0.1/lock", "hostile-key-0001", "h" * 32)
TIMEOUT = 1.0  # the push's own limit
GUARD = 10.0  # the test's: far above TIMEOUT, so only a push with no limit reaches it


def pusher(paths: pki.PkiPaths, port: int) -> SecureElementPush:
    out = pusher_for(paths, port)
    out.timeout = TIMEOUT
    return out


async def push_error(paths: pki.PkiPaths, handler: Handler) -> PushError:
    """The error the push ends with against *handler*, the push's time bounded by GUARD."""
    async with HostileRacs(paths, handler) as racs:
        async with asyncio.timeout(GUARD):
            with pytest.raises(PushError) as caught:
                await pusher(paths, racs.port).push(SEID, [Install(KEY)])
    return caught.value


async def silent_after_poweron(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, done: asyncio.Event
) -> None:
    await read_block(r)
    w.write(POWERED_ON)
    await read_block(r)
    await done.wait()


async def trickle(r: asyncio.StreamReader, w: asyncio.StreamWriter, done: asyncio.Event) -> None:
    """One byte every 50 ms of a block that never ends (bounded: 600 bytes, 30 s)."""
    await read_block(r)
    for byte in b"BEGIN\r\n+008 001 " + b"x" * 584:
        w.write(bytes([byte]))
        await w.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.05)  # the pace, or the test's end
        if done.is_set():
            return


@pytest.mark.parametrize("handler", [silent, silent_after_poweron, trickle])
async def test_a_racs_server_that_never_finishes_an_answer_fails_within_the_timeout(
    push_pki: pki.PkiPaths, handler: Handler
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    error = await push_error(push_pki, handler)
    assert isinstance(error, TransportError)
    assert "did not answer within 1 s" in error.reason
    assert loop.time() - started < TIMEOUT + 6  # the deadline, then a bounded close


async def endless(r: asyncio.StreamReader, w: asyncio.StreamWriter, done: asyncio.Event) -> None:
    """A POWERON answer of 100,000 success lines (bounded), then END."""
    await read_block(r)
    w.write(b"BEGIN\r\n")
    for _ in range(100):
        w.write(b"+008 001 card-0001 is powered on\r\n" * 1000)
        await w.drain()
    w.write(b"END\r\n")
    await w.drain()


async def test_a_racs_server_that_sends_lines_without_end_is_cut_off(
    push_pki: pki.PkiPaths,
) -> None:
    error = await push_error(push_pki, endless)
    assert isinstance(error, RacsProtocolError)
    assert "more lines than the 1 commands sent" in error.reason


def answering(*answers: bytes) -> Handler:
    """Answer each request block with the next of *answers*, then hang up."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: asyncio.Event) -> None:
        for answer in answers:
            if not await read_block(r):
                return
            w.write(answer)
            await w.drain()

    return handler


@pytest.mark.parametrize(
    ("answers", "why"),
    [
        ([b"BEGIN\r\n+008 " + b"1" * 5000 + b" on\r\nEND\r\n"], "not a RACS response line"),
        ([b"BEGIN\r\n+008 002 card-0001 is powered on\r\nEND\r\n"], "line 1 is numbered 2"),
        ([POWERED_ON, b"BEGIN\r\n+008 001 9000\r\nEND\r\n"], "a +008 line answers APDU"),
        ([b"BEGIN\r\nEND\r\n"], "no answer to POWERON"),
        ([b"BEGIN b7\r\n+008 001 card-0001 is powered on\r\nEND\r\n"], "block 'b7'"),
    ],
)
async def test_an_answer_that_does_not_fit_the_request_is_a_protocol_error(
    push_pki: pki.PkiPaths, answers: list[bytes], why: str
) -> None:
    error = await push_error(push_pki, answering(*answers))
    assert isinstance(error, RacsProtocolError)
    assert "outside the protocol" in error.reason and why in error.reason


async def test_an_error_text_of_the_servers_making_reaches_last_error_short_and_printable(
    push_pki: pki.PkiPaths,
) -> None:
    text = b"\x1b[2J\x1b[31mPWNED\x00" + b"x" * 500_000
    error = await push_error(push_pki, answering(b"BEGIN\r\n-408 001 " + text + b"\r\nEND\r\n"))
    assert isinstance(error, TransportError)
    assert error.reason.startswith("RACS refused POWERON card-0001: -408 001 ")
    assert error.reason.isprintable() and len(error.reason) <= 300
    assert "\\x1b[2J" in error.reason  # shown escaped, not sent to a terminal


@pytest.mark.parametrize("wrong", ["another CA", "another name"])
async def test_tls1_refuses_a_server_certificate_of_another_ca_or_name(
    push_pki: pki.PkiPaths, wrong: str
) -> None:
    """TLS#1 checks the RACS server against push.racs_ca and its name before any command."""
    served: list[bytes] = []

    async def record(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: asyncio.Event) -> None:
        served.append(await r.readline())

    async with HostileRacs(push_pki, record) as racs:
        client = pusher(push_pki, racs.port)
        if wrong == "another CA":  # a certificate the key server's CA did not sign
            racs.ctx.load_cert_chain(push_pki.key_server.cert, push_pki.key_server.key)
        else:
            client.server_hostname = "racs.elsewhere.example"
        async with asyncio.timeout(GUARD):
            with pytest.raises(TransportError) as caught:
                await client.push(SEID, [Install(KEY)])
    assert caught.value.reason.startswith("cannot reach RACS: SSLCertVerificationError")
    assert served == []
