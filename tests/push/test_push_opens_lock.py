"""A key pushed through RACS and TLS#2 opens the real lock; deleted, it is gone."""

from __future__ import annotations

import pytest

from elock_common.container import KeyContainer
from elock_push import Outcome
from elock_testkit.lockproc import LockProcess
from elock_testkit.push_harness import Racs
from key_client.cards import AppletChannel
from key_client.carrier import open_door
from tests.push.conftest import SEID


@pytest.mark.peer
async def test_a_pushed_key_opens_the_real_lock(racs: Racs, lock: LockProcess) -> None:
    key = lock.mint()
    container = KeyContainer(4, "Workshop", lock.uri, key.identity.encode(), key.psk.encode())
    pusher, applet = racs.pusher(), racs.cards[SEID].applet
    assert (await pusher.install(SEID, container)).outcome is Outcome.INSTALLED
    channel = AppletChannel(applet.process)  # the phone's side, on the same card
    (info,) = channel.keys()
    assert (info.container_id, info.label) == (4, "Workshop")
    outcome = await open_door(channel, info, timeout=15)
    assert outcome.code == "2.04"
    assert "on" in lock.relay_events()
    assert (await pusher.delete(SEID, 4)).outcome is Outcome.DELETED
    assert AppletChannel(applet.process).keys() == []
