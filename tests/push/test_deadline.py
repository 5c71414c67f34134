"""The one deadline rule both carriers use (``apdu_link.within``), in isolation."""

from __future__ import annotations

import asyncio

import pytest

from elock_push.apdu_link import within
from elock_push.errors import TransportError


async def test_past_the_deadline_the_body_ends_with_the_reason_given() -> None:
    deadline = asyncio.get_running_loop().time() + 0.05
    with pytest.raises(TransportError, match="the sync took too long"):
        async with within(deadline, "the sync took too long"):
            await asyncio.sleep(5)


async def test_a_deadline_already_past_ends_the_next_exchange_at_once() -> None:
    deadline = asyncio.get_running_loop().time() - 1
    with pytest.raises(TransportError, match="late"):
        async with within(deadline, "late"):
            await asyncio.sleep(5)


async def test_a_timeout_of_the_body_s_own_is_not_the_deadline() -> None:
    deadline = asyncio.get_running_loop().time() + 30
    with pytest.raises(TimeoutError):
        async with within(deadline, "late"):
            await asyncio.wait_for(asyncio.sleep(5), 0.01)


async def test_no_deadline_no_limit_and_answers_pass_through() -> None:
    async with within(None, "late"):
        await asyncio.sleep(0)
    deadline = asyncio.get_running_loop().time() + 30
    async with within(deadline, "late"):
        answer = await asyncio.sleep(0, result=b"\x90\x00")
    assert answer == b"\x90\x00"
