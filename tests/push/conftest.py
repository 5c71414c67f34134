from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from elock_common import pki
from elock_testkit.push_harness import Racs, make_card, start_racs

SEID = "card-0001"


@pytest.fixture(scope="session")
def push_pki(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiPaths:
    return pki.init_pki(tmp_path_factory.mktemp("push-pki"))


@pytest.fixture
async def racs(push_pki: pki.PkiPaths, tmp_path: Path) -> AsyncIterator[Racs]:
    r = await start_racs(push_pki, {SEID: make_card(push_pki, SEID)}, tmp_path / "apdus.log")
    yield r
    await r.server.close()
