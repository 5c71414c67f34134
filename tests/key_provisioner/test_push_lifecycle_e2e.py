"""A key's push beyond the happy path, end to end: retry, retire, a busy card, two workers.

The real parts of ``test_push_e2e`` (whose fixtures and helpers this reuses):
the key server's API and worker in process, a RACS server in its own thread
whose card is the applet in process, a real lock process enrolled through the
API.

- A card whose certificate names another SEID fails the key; once RACS is back
  with a good card for that SEID, ``POST /keys/{id}/push/retry`` installs it.
- Retiring the lock deletes its keys' containers from the card (``removed``)
  and leaves another lock's key on the same card alone.
- A card held by another RACS session leaves the key ``pending`` (never
  ``failed``) until it is free.
- Two key servers on one PostgreSQL database share one card: six keys, each
  installed exactly once, six distinct container ids, six containers.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy.orm import Session

from elock_common import pki
from elock_testkit.ports import free_udp_port
from elock_testkit.push_harness import Racs, make_card
from key_provisioner.api.main import create_app
from key_provisioner.core.config import Settings, WorkerSettings
from key_provisioner.services import provisioning
from racs.client import RacsClient, client_ssl_context
from tests.key_provisioner import test_push_e2e as e2e
from tests.key_provisioner.conftest import FAST_WORKER, Api, TestClient, make_token
from tests.key_provisioner.test_push_e2e import (
    SEID,
    EnrolledLock,
    RacsThread,
    card_list,
    push_of,
    register,
    wait_for,
    wait_push,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]

# test_push_e2e's fixtures: [push] settings, the PKI, the RACS thread, the real lock.
se_pki = e2e.se_pki
settings = e2e.settings
racs_thread = e2e.racs_thread
lock = e2e.lock


@pytest.fixture
def worker_settings() -> WorkerSettings:
    """As in test_push_e2e, with two keys per claim: two workers split six keys between them."""
    return dataclasses.replace(FAST_WORKER, batch=2)


@pytest.fixture
def failures(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``failed`` the worker records (it looks ``record_failed`` up at each call)."""
    seen: list[str] = []
    real = provisioning.record_failed

    def spy(session: Session, job: Any, why: str, **kwargs: Any) -> Any:
        seen.append(why)
        return real(session, job, why, **kwargs)

    monkeypatch.setattr(provisioning, "record_failed", spy)
    return seen


async def hold_card(racs: Racs, seid: str) -> RacsClient:
    """Another RACS session (as another worker would be) powers the card on and keeps it."""
    user = racs.paths.racs_users["keyserver"]
    context = client_ssl_context(user.cert, user.key, racs.paths.racs_ca.cert)
    client = await RacsClient.connect("127.0.0.1", racs.port, context)
    await client.power_on(seid)
    return client


def slow_card(apdu: bytes, _applet: Any) -> bytes:
    time.sleep(0.01)  # blocks the RACS thread's loop, as a slow reader would
    return apdu


def test_a_failed_push_is_retried_once_the_card_is_fixed(
    admin: Api,
    auditor: Api,
    lock: EnrolledLock,
    racs_thread: RacsThread,
    se_pki: pki.PkiPaths,
) -> None:
    wrong = make_card(se_pki, SEID, cert_seid="card-0002")
    racs = racs_thread.start(se_pki, {SEID: wrong})
    port = racs.port
    se = register(admin, SEID, port)
    key = admin.issue(lock.id, se["id"], label="Retried")
    push = wait_push(admin, key, "failed")
    assert "does not name SEID" in push["last_error"] and push["attempts"] == 1
    assert wrong.keyring.all() == []
    retry = f"/keys/{key['id']}/push/retry"

    # The card is replaced by a good one for the same SEID, behind a restarted RACS server.
    racs_thread.stop(racs)
    good = make_card(se_pki, SEID)
    racs_thread.start(se_pki, {SEID: good}, port=port)
    time.sleep(0.5)  # the worker does not retry a failed push by itself
    assert push_of(admin, key) == push and good.keyring.all() == []
    assert auditor.post(retry).status_code == 403
    assert push_of(admin, key) == push
    assert admin.post(f"/keys/{uuid.uuid4()}/push/retry").status_code == 404

    retried = admin.ok("POST", retry)
    assert retried["push"]["state"] == "pending" and retried["push"]["attempts"] == 0
    assert retried["push"]["last_error"] is None and retried["push"]["next_attempt_at"]
    push = wait_push(admin, key, "installed")
    assert push["attempts"] == 0 and push["last_error"] is None and push["container_id"] == 1
    assert card_list(good) == [(1, "Retried", key["uri"])]
    assert good.keyring.get(1).psk == key["psk"].encode()  # the PSK the API handed out
    conflict = admin.post(retry)
    assert conflict.status_code == 409 and "installed already" in conflict.json()["detail"]
    assert conflict.json()["type"] == "urn:elock:problem:push-not-retryable"


def test_retiring_the_lock_deletes_its_containers_from_the_card(
    admin: Api, lock: EnrolledLock, racs_thread: RacsThread, se_pki: pki.PkiPaths
) -> None:
    applet = make_card(se_pki, SEID)
    racs = racs_thread.start(se_pki, {SEID: applet})
    se = register(admin, SEID, racs.port)
    other_lock = admin.enrol("other-door", port=free_udp_port())["lock"]
    front = admin.issue(lock.id, se["id"], label="Front door")
    back = admin.issue(lock.id, se["id"], label="Back door")
    other = admin.issue(other_lock["id"], se["id"], label="Other door")
    installed = {k["id"]: wait_push(admin, k, "installed") for k in (front, back, other)}
    assert sorted(c[0] for c in card_list(applet)) == [1, 2, 3]

    retired = admin.ok("POST", f"/locks/{lock.id}/retire")
    for key in (front, back):
        push = wait_push(admin, key, "removed")
        assert push["removed_at"] is not None and push["last_error"] is None
        shown = admin.ok("GET", f"/keys/{key['id']}")
        assert shown["state"] == "revoked" and shown["revoke_reason"] == "lock retired"
        assert shown["revoked_at"] == retired["retired_at"]
    kept = installed[other["id"]]["container_id"]
    assert card_list(applet) == [(kept, "Other door", other["uri"])]
    assert push_of(admin, other)["state"] == "installed"
    assert admin.ok("GET", f"/keys/{other['id']}")["state"] == "active"
    # No revocation push for a retired lock: its version did not move.
    revocation = admin.ok("GET", f"/locks/{lock.id}")["revocation"]
    assert revocation["version"] == 0 and revocation["next_attempt_at"] is None


def test_a_card_busy_with_another_session_is_retried_never_failed(
    admin: Api,
    lock: EnrolledLock,
    racs_thread: RacsThread,
    se_pki: pki.PkiPaths,
    failures: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="key_provisioner.worker")
    applet = make_card(se_pki, SEID)
    racs = racs_thread.start(se_pki, {SEID: applet})
    se = register(admin, SEID, racs.port)
    holder = racs_thread.run(hold_card(racs, SEID))
    key = admin.issue(lock.id, se["id"])

    def busy() -> dict[str, Any] | None:
        push = push_of(admin, key)
        return push if "locked by another session" in (push["last_error"] or "") else None

    push = wait_for(busy, 10, "the worker to find the card busy")
    assert push["state"] == "pending" and push["attempts"] == 0 and push["next_attempt_at"]
    time.sleep(1.5)  # past retry_max: tried again and again, never failed, no backoff
    push = push_of(admin, key)
    assert push["state"] == "pending" and push["attempts"] == 0
    tries = [r for r in caplog.records if "card busy" in r.getMessage()]
    assert len(tries) >= 3, [r.getMessage() for r in caplog.records]
    assert applet.keyring.all() == []

    racs_thread.run(holder.close())  # the other session ends: RACS frees the card
    push = wait_push(admin, key, "installed")
    assert push["attempts"] == 0 and push["last_error"] is None
    assert [k.identity for k in applet.keyring.all()] == [key["identity"].encode()]
    assert failures == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_key_servers_share_one_card(
    admin: Api,
    settings: Settings,
    lock: EnrolledLock,
    racs_thread: RacsThread,
    se_pki: pki.PkiPaths,
    failures: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="key_provisioner.worker")
    claims: Counter[int] = Counter()  # keys claimed, per worker (per engine)
    guard = threading.Lock()
    real_claim = provisioning.claim_due

    def claim_spy(session: Session, *args: Any, **kwargs: Any) -> Any:
        jobs = real_claim(session, *args, **kwargs)
        with guard:
            claims[id(session.get_bind())] += len(jobs)
        return jobs

    monkeypatch.setattr(provisioning, "claim_due", claim_spy)
    applet = make_card(se_pki, SEID)
    racs = racs_thread.start(se_pki, {SEID: applet})
    racs.cards[SEID].before = slow_card  # visits last longer: the workers collide on the card
    se = register(admin, SEID, racs.port)
    with TestClient(create_app(settings)) as second_client:
        second = Api(second_client, make_token(second_client, "admin"))

        def issue_three(api: Api) -> list[Any]:
            return [api.issue(lock.id, se["id"], label=f"key {i}") for i in range(3)]

        with ThreadPoolExecutor(2) as pool:  # both servers issue at once, each kicks its worker
            issued = [k for three in pool.map(issue_three, [admin, second]) for k in three]
        pushes = [wait_push(admin, key, "installed", timeout=60) for key in issued]

    assert len(claims) == 2 and all(claims.values()), claims  # both workers took keys
    ids = [push["container_id"] for push in pushes]
    assert sorted(ids) == [1, 2, 3, 4, 5, 6]
    on_card = {c.container_id: c.identity for c in applet.keyring.all()}
    assert on_card == {i: k["identity"].encode() for i, k in zip(ids, issued, strict=True)}
    installs = Counter(
        record.args[2]
        for record in caplog.records
        if record.msg.startswith("card %s: %s of container")
        and isinstance(record.args, tuple)
        and record.args[1:4:2] == ("install", "installed")
    )
    assert installs == Counter(range(1, 7)), installs  # each container written exactly once
    assert failures == []  # a visit that found the card busy with the other worker retried
