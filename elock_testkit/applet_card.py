"""One in-process card holding one key, as the key host's ``--card`` runs it.

Tests of the key host against a lock (hostile, lossy or real) need a card with
the lock's key in it and nothing else: a fresh applet, personalised with a
transport key, the key installed through the applet's own provisioning path.
"""

from __future__ import annotations

import secrets

from elock_common import card_protocol as c
from elock_common.container import Flags, KeyContainer
from firmware.apdu import command
from firmware.applet import Applet
from firmware.personalization import CELL_TRANSPORT_KEY
from firmware.store import Eeprom, Store
from firmware.virtual import host
from key_client.cards import AppletChannel
from key_client.channel import KeyInfo


def applet_with_key(uri: str, identity: bytes, psk: bytes) -> tuple[Applet, AppletChannel, KeyInfo]:
    """The applet, a channel to it, and the one key it lists (any validity)."""
    store = Store(Eeprom())
    transport_key = secrets.token_bytes(32)
    with store.transaction() as tx:
        tx.put(CELL_TRANSPORT_KEY, transport_key)
    applet = Applet(store)
    assert applet.process(command(c.CLA_ISO, c.INS_SELECT, 0x04, 0x00, c.AID)) == b"\x90\x00"
    key = KeyContainer(0, "Door", uri, identity, psk, 0, 0xFFFFFFFF, Flags.NONE)
    host.install(applet.process, transport_key, key)
    channel = AppletChannel(applet.process)
    (info,) = channel.keys()
    return applet, channel, info
