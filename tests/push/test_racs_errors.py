"""How a push fails when RACS misbehaves: always a typed ``PushError`` with its reason.

A server that answers garbage, a card held by another session, a RACS server
that speaks only TLS 1.0: the key server must get an error it can act on
(and record), never a bare ``ValueError`` that stalls the worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from elock_common import pki
from elock_push import CardBusyError, Install, RacsProtocolError, TransportError
from elock_testkit.push_harness import Racs, door_key, pusher_for
from racs.client import RacsClient, client_ssl_context
from tests.push.conftest import SEID
from tests.push.racs_peers import POWERED_ON, GarbageRacs, tls10_only_server

KEY = door_key("Front door", "coaps://127.0.0.1/lock", "errors-key-0001", "q" * 32)


@pytest.mark.parametrize(
    ("answers", "why"),
    [
        ([b"hello\r\n"], "expected BEGIN"),
        ([b"BEGIN\r\nnot a RACS line\r\nEND\r\n"], "not a RACS response line"),
        ([b"BEGIN\r\n+008 001 \xff\xfe\r\nEND\r\n"], "not ASCII"),
        ([POWERED_ON, b"BEGIN\r\n+006 001 9Z00\r\nEND\r\n"], "not hex"),
        ([POWERED_ON, b"BEGIN\r\nEND\r\n"], "0 answers to 1 APDUs"),
        ([b"BEGIN\r\n+008 001 " + b"A" * (1 << 21)], "longer than the limit"),
        ([b"BEGIN\r\n+008 001 cut in the middle"], "closed in the middle of a line"),
    ],
)
async def test_a_server_that_answers_garbage_fails_the_push_with_a_reason(
    push_pki: pki.PkiPaths, answers: list[bytes], why: str
) -> None:
    garbage = GarbageRacs(push_pki, answers)
    await garbage.start()
    try:
        pusher = pusher_for(push_pki, garbage.port)
        with pytest.raises(RacsProtocolError) as caught:
            await pusher.push(SEID, [Install(KEY)])
        assert "outside the protocol" in caught.value.reason and why in caught.value.reason
        assert "\n" not in caught.value.reason
        result = await pusher.install(SEID, KEY)  # the one-operation form: FAILED, with why
        assert result.error is not None and why in result.error.reason
    finally:
        await garbage.close()


async def test_a_card_held_by_another_session_is_a_typed_busy_error(
    push_pki: pki.PkiPaths, racs: Racs
) -> None:
    user = push_pki.racs_users["keyserver"]
    ctx = client_ssl_context(user.cert, user.key, push_pki.racs_ca.cert)
    async with await RacsClient.connect("127.0.0.1", racs.port, ctx) as holder:
        await holder.power_on(SEID)
        with pytest.raises(CardBusyError) as caught:
            await racs.pusher().push(SEID, [Install(KEY)])
    assert caught.value.seid == SEID and "-708" in caught.value.reason


@pytest.mark.peer
async def test_a_tls10_only_racs_server_is_named_with_its_version(
    push_pki: pki.PkiPaths, tmp_path: Path
) -> None:
    with tls10_only_server(tmp_path) as port:
        with pytest.raises(TransportError) as caught:
            await pusher_for(push_pki, port).push(SEID, [Install(KEY)])
    assert caught.value.reason == (
        f"cannot use RACS: RACS server 127.0.0.1:{port} offers only TLS 1.0;"
        " eLock requires TLS 1.2 or later"
    )
