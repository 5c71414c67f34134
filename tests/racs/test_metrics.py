"""The RACS server's metrics: refusals by cause, APDUs by outcome, card time, open sessions.

A real TLS server in process, real clients, and the opt-in listener scraped
over HTTP and read with Prometheus's own parser. Counters are process-wide,
so each test compares before and after.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from elock_testkit.metrics import Samples
from elock_testkit.metrics import scrape as scrape_now
from elock_testkit.ports import free_tcp_port
from elock_testkit.racs_applets import ELOCK_AID
from elock_testkit.racs_pki import Pki
from racs import metrics
from racs.client import RemoteRacsError
from racs.config import load_config
from racs.errors import ConfigError
from tests.racs.conftest import Harness, raw_client_context
from tests.racs.test_server import read_block, select


async def scrape(port: int) -> Samples:
    return await asyncio.to_thread(scrape_now, port)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_refusals_apdus_and_sessions(pki: Pki, harness: Harness) -> None:
    exporter = metrics.Exporter("127.0.0.1", free_tcp_port(), lambda: harness.server.session_count)
    try:
        before = await scrape(exporter.port)
        alice, bob = await harness.connect("alice"), await harness.connect("bob")
        with pytest.raises(RemoteRacsError, match="may not use SEID"):
            await bob.power_on("card1")
        await alice.power_on("card1")
        assert await alice.apdu("card1", select(ELOCK_AID)) == b"\x90\x00"
        with pytest.raises(RemoteRacsError, match="blocked by a filter"):
            await alice.apdu("card1", bytes.fromhex("80E60C0000"))
        await alice.power_on("shared")
        with pytest.raises(RemoteRacsError, match="locked by another session"):
            await bob.apdu("shared", b"\x00\x01\x00\x00")
        ctx = raw_client_context(pki, pki.no_cn.cert, pki.no_cn.key)
        reader, writer = await asyncio.open_connection("127.0.0.1", harness.port, ssl=ctx)
        assert (await read_block(reader))[1].endswith("certificate has no CN")
        writer.close()

        after = await scrape(exporter.port)
        assert after[("racs_sessions_open", ())] >= 2
        for cause in ("acl", "filter", "card_busy", "certificate"):
            assert delta(after, before, "racs_refusals_total", cause=cause) == 1, cause
        assert delta(after, before, "racs_apdus_total", outcome="sw_ok") == 1
        assert delta(after, before, "racs_apdus_total", outcome="refused") == 2
        assert delta(after, before, "racs_commands_total", command="poweron", outcome="ok") == 2
        refused = delta(after, before, "racs_commands_total", command="poweron",
                        outcome="unauthorized")  # fmt: skip
        assert refused == 1
        assert delta(after, before, "racs_card_round_trip_seconds_count") == 1
        labels = " ".join(str(k[1]) for k in after)
        assert "alice" not in labels and "card1" not in labels
    finally:
        exporter.close()


def test_metrics_section_is_opt_in_and_checked(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).touch()
    (tmp_path / "users.txt").write_text("keyserver 1 vcard\n")
    base = (
        '[server]\ncert = "cert.pem"\nkey = "key.pem"\nclient_ca = "ca.pem"\n'
        '[access]\nusers = "users.txt"\n'
    )
    path = tmp_path / "racs.toml"
    path.write_text(base)
    cfg = load_config(path)
    assert (cfg.metrics_enabled, cfg.metrics_host, cfg.metrics_port) == (False, "127.0.0.1", 9471)
    path.write_text(base + "[metrics]\nenabled = true\nport = 0\n")
    with pytest.raises(ConfigError, match=r"\[metrics\]"):
        load_config(path)
