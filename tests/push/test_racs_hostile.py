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
from elock_push import Install, PushError, SecureElementPush, TransportError
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
