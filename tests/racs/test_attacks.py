"""Attacks on a running ``racs-server`` by a user with few rights, with OpenSSL's s_client.

Each test does what issue 14 found an intruder could do, against the real
server process (its APDU audit log tells what reached the card):

- a client-chosen ``FETCH=`` header sent to the card unchecked (INSTALL,
  MANAGE CHANNEL, a SELECT past the AID table), and a ``MORE=`` loop;
- a SELECT by a partial AID that the card completes to a black-listed one;
- a TLS session resumed without a certificate (TLS 1.2 ids, TLS 1.3 tickets);
- a client refused at the handshake learns why (an alert) and the server logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from elock_testkit.racs_applets import TestApplet
from elock_testkit.racs_pki import Pki
from racs.access import AccessPolicy
from racs.backends import InProcessCard
from racs.registry import Registry, Slot
from racs.server import RacsServer
from racs.service import RacsService
from tests.conftest import require_tool
from tests.racs.test_cli import lines_until_end, s_client, start_server, write_config

pytestmark = pytest.mark.peer
BLACK_LISTED = "A0000000041010"  # OTHER_AID of the test applet: alice may not select it


@dataclass
class Running:
    port: int
    apdu_log: Path
    proc: asyncio.subprocess.Process

    def commands(self) -> list[str]:
        """The command APDUs that reached a card, in hex, as the audit log shows them."""
        if not self.apdu_log.exists():
            return []
        return [line.split()[-3] for line in self.apdu_log.read_text().splitlines()]

    async def stop(self) -> str:
        """Stop the server; what it logged."""
        if self.proc.returncode is None:
            self.proc.terminate()
        assert self.proc.stderr is not None
        err = await asyncio.wait_for(self.proc.stderr.read(), 10)
        assert await asyncio.wait_for(self.proc.wait(), 10) == 0
        return err.decode(errors="replace")


@pytest.fixture
async def server(pki: Pki, tmp_path: Path) -> AsyncIterator[Running]:
    config = write_config(tmp_path, pki)
    (tmp_path / "seid" / "MySEID.txt").write_text(
        f"4A544553543030 no 1 alice\n{BLACK_LISTED} yes 1 alice\ndefault no 1 alice\n"
    )
    (tmp_path / "filters.txt").write_text("deny FFFF 80E6\ndeny FFFF 0070\n")
    log = tmp_path / "apdus.log"
    config.write_text(
        config.read_text().replace("idle_timeout = 20", f'idle_timeout = 20\nlog_apdus = "{log}"')
    )
    proc, port = await start_server(config)
    running = Running(port, log, proc)
    yield running
    if proc.returncode is None:
        await running.stop()


def block(*lines: str) -> str:
    return "\n".join(["BEGIN a", "POWERON MySEID APPEND", *lines, "END"]) + "\n"


SELECT_JTEST = "APDU MySEID 00A40400074A544553543030 APPEND"
LONG_ANSWER = "APDU MySEID 0003012C"  # the test applet answers 61 00: "fetch 256 more"


@pytest.mark.parametrize(
    ("fetch", "why"),
    [
        ("80E60000", "APDU 80E60000... is blocked by a filter"),  # INSTALL, denied to all
        ("00700000", "APDU 00700000... is blocked by a filter"),  # MANAGE CHANNEL
        ("00A40400", "FETCH= may not make a SELECT"),  # a SELECT past the AID table
    ],
)
async def test_fetch_cannot_send_the_card_what_the_filters_refuse(
    pki: Pki, server: Running, fetch: str, why: str
) -> None:
    request = block(SELECT_JTEST, f"{LONG_ANSWER} MORE=61 FETCH={fetch} APPEND")
    lines, _ = await s_client(pki, server.port, "tls1_3", "alice", request)
    assert lines[0] == "BEGIN a" and lines[1].startswith("-606 003 ") and why in lines[1], lines
    # The SELECT and the request's own APDU reached the card, nothing after them.
    assert server.commands() == ["00A40400074A544553543030", "0003012C"]


async def test_a_more_that_matches_every_answer_is_bounded(pki: Pki, server: Running) -> None:
    request = block(SELECT_JTEST, "APDU MySEID 00C0000000 MORE=90 FETCH=00C00000 APPEND")
    lines, _ = await s_client(pki, server.port, "tls1_3", "alice", request)
    assert lines[1].startswith("-806 003 no final status after 256 exchanges"), lines
    assert len(server.commands()) == 1 + 256


async def test_the_same_check_still_lets_get_response_through(pki: Pki, server: Running) -> None:
    request = block(SELECT_JTEST, f"{LONG_ANSWER} MORE=61 FETCH=00C00000 APPEND")
    lines, _ = await s_client(pki, server.port, "tls1_3", "alice", request)
    assert lines[3] == "+006 003 " + bytes(i & 0xFF for i in range(300)).hex().upper() + "9000"


async def test_a_partial_aid_select_counts_as_the_aids_it_may_reach(
    pki: Pki, server: Running
) -> None:
    partial = BLACK_LISTED[:10]  # 5 bytes: the card completes it to A0000000041010
    request = block(f"APDU MySEID 00A4040005{partial} APPEND")
    lines, _ = await s_client(pki, server.port, "tls1_2", "alice", request)
    assert lines[1] == (
        f"-606 002 user alice may not select AID {partial} (a prefix of 1 listed AID(s)) on MySEID"
    ), lines
    assert server.commands() == []  # the card never saw it
    # A prefix of nothing listed is judged by "default", as any unlisted AID.
    lines, _ = await s_client(
        pki, server.port, "tls1_2", "alice", block("APDU MySEID 00A4040005B000000001 APPEND")
    )
    assert lines[2] == "+006 002 6A82", lines


async def s_client_session(
    pki: Pki, port: int, tls: str, cn: str | None, session: Path, *, save: bool
) -> tuple[str, list[str]]:
    """One s_client run that saves (-sess_out) or offers (-sess_in) a session; its
    handshake summary and the RACS lines it got for LIST."""
    cmd = [require_tool("openssl"), "s_client", f"-{tls}", "-CAfile", str(pki.ca),
           "-connect", f"127.0.0.1:{port}"]  # fmt: skip
    if cn is not None:
        cmd += ["-cert", str(pki.users[cn].cert), "-key", str(pki.users[cn].key)]
    cmd += ["-sess_out" if save else "-sess_in", str(session)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdin and proc.stdout
    proc.stdin.write(b"BEGIN\nLIST\nEND\n")
    try:
        out = await lines_until_end(proc.stdout)
        proc.stdin.write(b"Q\n")  # s_client's command for a clean close (close_notify)
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    summary = "\n".join(line for line in out if line.startswith(("New,", "Reused,")))
    return summary, [line for line in out if line[:1] in "+-" and line[1:4].isdigit()]


@pytest.mark.parametrize("tls", ["tls1_2", "tls1_3"])
async def test_no_session_resumes_without_its_certificate(
    pki: Pki, server: Running, tmp_path: Path, tls: str
) -> None:
    session = tmp_path / f"{tls}.session"
    summary, lines = await s_client_session(pki, server.port, tls, "alice", session, save=True)
    assert summary.startswith("New,") and lines == ["+004 001 MySEID OtherSEID"], (summary, lines)
    if not session.exists():
        return  # the server gave nothing to resume with (no ticket, no session id)
    summary, lines = await s_client_session(pki, server.port, tls, None, session, save=False)
    assert "Reused" not in summary, summary
    assert lines == [], lines  # no certificate, no session: LIST did not run as alice
    assert "+004" not in "".join(lines)


async def test_a_client_refused_at_the_handshake_gets_an_alert_and_a_log_line(
    pki: Pki, server: Running
) -> None:
    for tls in ("tls1_3", "tls1_2"):
        lines, err = await s_client(pki, server.port, tls, None, "BEGIN\nLIST\nEND\n")
        assert lines == [], lines
        assert "alert" in err.lower(), err
    logged = await server.stop()
    refusals = [line for line in logged.splitlines() if "refused a TLS client from" in line]
    assert len(refusals) == 2, logged
    assert all("PEER_DID_NOT_RETURN_A_CERTIFICATE" in line for line in refusals), refusals


@pytest.mark.parametrize("tls", ["tls1_2", "tls1_3"])
async def test_a_resumed_session_is_refused_even_where_the_context_resumes(
    pki: Pki, tmp_path: Path, tls: str
) -> None:
    """Defence in depth: a context that still resumes (where libssl's cache could not
    be turned off) gets no resumed session past the server."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(pki.server.cert, pki.server.key)
    ctx.load_verify_locations(cafile=pki.ca)
    registry = Registry([Slot("MySEID", InProcessCard(TestApplet()))])
    policy = AccessPolicy(users={"alice": frozenset({"MySEID"})})
    server = RacsServer(RacsService(registry, policy), ctx, port=0)
    await server.start()
    try:
        session = tmp_path / "session"
        _, lines = await s_client_session(pki, server.port, tls, "alice", session, save=True)
        assert lines == ["+004 001 MySEID"] and session.exists()
        summary, lines = await s_client_session(pki, server.port, tls, None, session, save=False)
        assert "Reused" in summary  # OpenSSL resumed it ...
        assert lines == []  # ... and the server refused the session before any command
    finally:
        await server.close()


async def test_a_deny_by_default_table_still_gets_long_answers_whole(
    pki: Pki, tmp_path: Path
) -> None:
    """FETCH= may make a GET RESPONSE whatever filter_default says; a filter that names
    GET RESPONSE still decides, and nothing else FETCH= makes slips through."""
    config = write_config(tmp_path, pki)
    deny_default = 'filters = "filters.txt"\nfilter_default = "deny"'
    config.write_text(config.read_text().replace('filters = "filters.txt"', deny_default))
    long = block(SELECT_JTEST, f"{LONG_ANSWER} MORE=61 FETCH=00C00000 APPEND")
    other = block(SELECT_JTEST, f"{LONG_ANSWER} MORE=61 FETCH=00B00000 APPEND")
    whole = "+006 003 " + bytes(i & 0xFF for i in range(300)).hex().upper() + "9000"
    for filters, answers in [
        ("allow FFFF 00A4\nallow FFFF 0003\n", {long: whole, other: "-606 003 APDU 00B00000"}),
        ("deny FFFF 00C0\nallow FFFF 00A4\nallow FFFF 0003\n", {long: "-606 003 APDU 00C00000"}),
    ]:
        (tmp_path / "filters.txt").write_text(filters)  # read at start: one server each
        proc, port = await start_server(config)
        try:
            for request, expected in answers.items():
                lines, _ = await s_client(pki, port, "tls1_3", "alice", request)
                assert any(line.startswith(expected) for line in lines), (filters, lines)
        finally:
            await Running(port, tmp_path / "none.log", proc).stop()
