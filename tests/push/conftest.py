from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from elock_common import pki
from elock_testkit.push_harness import Racs, make_card, start_racs
from racs.style import ServerStyle

SEID = "card-0001"


@pytest.fixture(scope="session")
def push_pki(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiPaths:
    return pki.init_pki(tmp_path_factory.mktemp("push-pki"))


@pytest.fixture(params=list(ServerStyle), ids=lambda s: f"racs-{s.value}")
def style(request: pytest.FixtureRequest) -> ServerStyle:
    """Both behaviours a RACS server may have (racs.style): the push must work with each."""
    value: ServerStyle = request.param
    return value


@pytest.fixture
async def racs(push_pki: pki.PkiPaths, tmp_path: Path, style: ServerStyle) -> AsyncIterator[Racs]:
    cards = {SEID: make_card(push_pki, SEID)}
    r = await start_racs(push_pki, cards, tmp_path / "apdus.log", style=style)
    yield r
    await r.close()
