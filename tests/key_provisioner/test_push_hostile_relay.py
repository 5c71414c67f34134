"""A RACS server that lies about status words cannot make the key server lose track of a key.

The real parts of ``test_push_e2e`` (whose fixtures this reuses): the key
server's API and worker in process, a RACS server in its own thread whose card
is the real applet, a real lock. The RACS server is hostile only in what it can
do without TLS#2's keys: it rewrites the status word of the card's answer to
the flight that carries the provisioning commands. The card did the command;
the key server cannot know it, so the push must stay open (retried, the
commands are idempotent), never ``failed``: a failed install counts as never
having reached the card, so a revoke would make it ``removed`` at once and
leave the container (and its PSK) in the card, its container id given to the
next key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from elock_common import pki
from elock_testkit.push_harness import is_command_record, make_card
from firmware.applet import Applet
from tests.key_provisioner import test_push_e2e as e2e
from tests.key_provisioner.conftest import Api
from tests.key_provisioner.test_push_e2e import (
    SEID,
    EnrolledLock,
    RacsThread,
    register,
    wait_push,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]

se_pki = e2e.se_pki
worker_settings = e2e.worker_settings
settings = e2e.settings
racs_thread = e2e.racs_thread
lock = e2e.lock


@dataclass
class LyingCard:
    """The applet as a hostile RACS server shows it: the first *lies* command flights get 6F00."""

    applet: Applet
    lies: int = 1
    told: list[bytes] = field(default_factory=list)

    @property
    def tls(self) -> Any:
        return self.applet.tls

    def process(self, apdu: bytes) -> bytes:
        commands = is_command_record(apdu, self.applet) and apdu[3] & 0x02  # a flight's last
        response = self.applet.process(apdu)
        if commands and len(self.told) < self.lies:
            self.told.append(apdu)
            return response[:-2] + b"\x6f\x00"
        return response

    def reset(self) -> None:
        self.applet.reset()


def test_a_lie_about_the_install_leaves_the_key_pending_and_a_revoke_deletes_it(
    admin: Api, lock: EnrolledLock, racs_thread: RacsThread, se_pki: pki.PkiPaths
) -> None:
    applet = make_card(se_pki, SEID)
    racs = racs_thread.start(se_pki, {SEID: applet})
    liar = LyingCard(applet)
    racs.cards[SEID].applet = liar  # type: ignore[assignment]
    se = register(admin, SEID, racs.port)
    key = admin.issue(lock.id, se["id"], label="Front door")

    # The card installed it; the key server was told 6F00 and retried: "already present".
    push = wait_push(admin, key, "installed")
    assert liar.told, "the RACS server never lied"
    assert push["container_id"] == 1
    assert [k.identity for k in applet.keyring.all()] == [key["identity"].encode()]

    admin.ok("POST", f"/keys/{key['id']}/revoke", json={"reason": "lost"})
    wait_push(admin, key, "removed")
    assert applet.keyring.all() == []  # removed means not in the card


def test_a_lie_about_the_delete_is_retried_not_failed(
    admin: Api, lock: EnrolledLock, racs_thread: RacsThread, se_pki: pki.PkiPaths
) -> None:
    applet = make_card(se_pki, SEID)
    racs = racs_thread.start(se_pki, {SEID: applet})
    se = register(admin, SEID, racs.port)
    key = admin.issue(lock.id, se["id"], label="Front door")
    wait_push(admin, key, "installed")

    liar = LyingCard(applet)
    racs.cards[SEID].applet = liar  # type: ignore[assignment]
    admin.ok("POST", f"/keys/{key['id']}/revoke", json={"reason": "lost"})
    push = wait_push(admin, key, "removed")
    assert liar.told, "the RACS server never lied"
    assert push["removed_at"] is not None
    assert applet.keyring.all() == []
