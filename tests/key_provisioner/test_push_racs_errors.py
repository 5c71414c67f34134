"""A misbehaving RACS server never stalls a push silently: the key stays pending, with why.

The key server's worker only records a ``PushError``; the RACS client's parse
failures and a RACS server that speaks only TLS 1.0 must reach it as one
(issues 15 and 20), so the key shows ``last_error`` and is retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from elock_common import pki
from tests.key_provisioner import test_push_e2e as e2e
from tests.key_provisioner.conftest import Api
from tests.key_provisioner.test_push_e2e import RacsThread, push_of, register, wait_for
from tests.push.racs_peers import POWERED_ON, GarbageRacs, HostileRacs, silent, tls10_only_server

pytestmark = [pytest.mark.peer, pytest.mark.slow]
SEID = "card-0001"
# The key server with push settings and a worker, as the push end-to-end tests run it.
se_pki, settings, worker_settings = e2e.se_pki, e2e.settings, e2e.worker_settings
racs_thread = e2e.racs_thread


def pending_with_error(admin: Api, key: dict[str, Any], within: float = 15) -> dict[str, Any]:
    def tried() -> dict[str, Any] | None:
        push = push_of(admin, key)
        return push if push["attempts"] >= 1 and push["last_error"] else None

    push: dict[str, Any] = wait_for(tried, within, "a failed try with last_error")
    assert push["state"] == "pending" and push["next_attempt_at"] is not None
    return push


def first_failed_push(
    admin: Api, racs_thread: RacsThread, racs: Any, door: str, within: float = 15
) -> dict[str, Any]:
    """Start *racs* (a ``GarbageRacs`` or ``HostileRacs``), register its card, issue a key for
    a new lock named *door*, and return the key's push after its first failed try."""
    racs_thread.run(racs.start())
    try:
        se = register(admin, SEID, racs.port)
        key = admin.issue(admin.enrol(door)["lock"]["id"], se["id"])
        return pending_with_error(admin, key, within)
    finally:
        racs_thread.run(racs.close())


def test_a_racs_server_that_answers_garbage_leaves_the_key_pending_with_why(
    admin: Api, racs_thread: RacsThread, se_pki: pki.PkiPaths
) -> None:
    garbage = GarbageRacs(se_pki, [POWERED_ON, b"BEGIN\r\n+006 001 not hex\r\nEND\r\n"])
    push = first_failed_push(admin, racs_thread, garbage, "garbage-door")
    assert "the RACS server answered outside the protocol" in push["last_error"]


def test_a_tls10_only_racs_server_leaves_the_key_pending_with_why(
    admin: Api, se_pki: pki.PkiPaths, tmp_path: Path
) -> None:
    with tls10_only_server(tmp_path) as port:
        se = register(admin, SEID, port)
        key = admin.issue(admin.enrol("old-racs-door")["lock"]["id"], se["id"])
        push = pending_with_error(admin, key)
    assert f"RACS server 127.0.0.1:{port} offers only TLS 1.0" in push["last_error"]
    assert "eLock requires TLS 1.2 or later" in push["last_error"]


def test_a_racs_server_that_never_answers_leaves_the_key_pending_with_why(
    admin: Api, racs_thread: RacsThread, se_pki: pki.PkiPaths
) -> None:
    """Before push.timeout bounded the whole session, the worker waited on it for ever:
    no attempt, no last_error, and no other card pushed by that process."""
    silent_racs = HostileRacs(se_pki, silent)
    push = first_failed_push(admin, racs_thread, silent_racs, "silent-door", within=30)
    assert push["last_error"] == "the RACS server did not answer within 10 s"  # push.timeout


@pytest.mark.parametrize(
    "answer",
    [b"BEGIN\r\n+008 " + b"1" * 5000 + b" on\r\nEND\r\n", b"BEGIN\r\nEND\r\n"],
    ids=["index-of-5000-digits", "no-line-for-poweron"],
)
def test_an_answer_the_client_could_not_parse_leaves_the_key_pending_with_why(
    admin: Api, racs_thread: RacsThread, se_pki: pki.PkiPaths, answer: bytes
) -> None:
    """These raised ValueError and IndexError past every PushError handler: the worker's
    round failed, and the key kept no attempt and no last_error."""
    push = first_failed_push(admin, racs_thread, GarbageRacs(se_pki, [answer]), "unparsed-door")
    assert "the RACS server answered outside the protocol" in push["last_error"]


def test_an_unexpected_error_in_a_visit_leaves_the_key_pending_with_why(
    admin: Api, racs_thread: RacsThread, se_pki: pki.PkiPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only ``PushError`` was caught: a bug of ours in a visit (a parser's stray
    ``ValueError``) ended the worker's round and left the keys with no ``last_error``."""
    from key_provisioner import worker

    async def broken_visit(card: object, jobs: object) -> object:
        raise KeyError("a bug of ours")

    monkeypatch.setattr(worker, "visit", broken_visit)
    racs = HostileRacs(se_pki, silent)  # TLS#1 is all the visit gets to
    push = first_failed_push(admin, racs_thread, racs, "buggy-door")
    assert push["last_error"] == "unexpected error in the push (KeyError)"
