"""The whole chain with nothing in process: racs-server -> pcscd -> vpcd -> elock-se serve.

The card file is personalized by ``elock-se personalize --seid``; the RACS
server runs as ``racs-server --config racs.toml --log-apdus FILE`` with a PC/SC
backend. pcscd's vpcd port is shared: these tests run one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from elock_common import pki
from elock_common.container import KeyContainer
from elock_push import Delete, Install, Outcome
from elock_testkit.cardproc import ServedCard, personalize_with_identity
from elock_testkit.push_harness import pusher_for
from elock_testkit.racsproc import RacsProcess
from firmware.keyring import Keyring
from firmware.store import Store
from firmware.virtual import cardfile

pytestmark = pytest.mark.peer
PSK = "cGNzYy1wYXRoLXNlY3JldC1wc2stMDAx"


@pytest.fixture
def served(push_pki: pki.PkiPaths, tmp_path: Path) -> Iterator[tuple[Path, RacsProcess]]:
    card = tmp_path / "card.json"
    personalize_with_identity(card, push_pki, "card-0200")
    served = ServedCard(card)
    try:
        racs = RacsProcess(push_pki, tmp_path, "card-0200")
        try:
            yield card, racs
        finally:
            racs.stop()
    finally:
        served.stop()


async def test_push_through_pcscd_and_a_served_card(
    push_pki: pki.PkiPaths, served: tuple[Path, RacsProcess]
) -> None:
    card, racs = served
    pusher = pusher_for(push_pki, racs.port)
    container = KeyContainer(1, "Back door", "coaps://127.0.0.1/lock", b"back-door-1",
                             PSK.encode())  # fmt: skip
    report = await pusher.push("card-0200", [Install(container)], list_after=True)
    assert [r.outcome for r in report.results] == [Outcome.INSTALLED]
    assert [k.label for k in report.containers] == ["Back door"]
    assert (await pusher.install("card-0200", container)).outcome is Outcome.ALREADY_PRESENT
    report = await pusher.push("card-0200", [Delete(5)], list_after=True)
    assert [r.outcome for r in report.results] == [Outcome.NOT_FOUND]
    # elock-se serve saved the card file after the APDU that changed it
    keyring = Keyring(Store(cardfile.load(card)))
    assert [(k.container_id, k.psk) for k in keyring.all()] == [(1, PSK.encode())]
    text = racs.log.read_text().upper()
    assert "00D8" in text
    for secret in (container.psk, container.label.encode(), container.identity):
        assert secret.hex().upper() not in text
