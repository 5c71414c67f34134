"""Push states an admin changes, through the API: retry a failed push, retire a lock;
and which failed pushes the worker makes ``failed``.

No worker runs here (the conftest default): the worker's side is simulated by
writing the key row, as a claim or a RACS visit would have left it. The end to
end version, with a real RACS server and card, is ``test_push_lifecycle_e2e``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from elock_common.pki import SeCertificateError
from elock_push import (
    CardBusyError,
    CardError,
    PushError,
    TlsSessionError,
    TransportError,
    UnconfirmedCommandsError,
    UntrustedCardError,
)
from key_provisioner.db.models import Key, Lock
from key_provisioner.schemas.keys import PushState
from key_provisioner.se_push import Verdict, verdict
from key_provisioner.services import provisioning
from racs.errors import RemoteRacsError
from tests.key_provisioner.conftest import Api

NOT_RETRYABLE = "urn:elock:problem:push-not-retryable"


@pytest.fixture
def setup(admin: Api) -> dict[str, Any]:
    return {"lock": admin.enrol()["lock"], "se": admin.register_se()}


def _sessions(admin: Api) -> Any:
    return admin.client.app.state.elock.sessions  # type: ignore[attr-defined]


def set_push(admin: Api, key: dict[str, Any], **fields: Any) -> None:
    """Leave the key's row as the worker would have (``state`` is ``push_state``)."""
    with _sessions(admin)() as session:
        row = session.get(Key, uuid.UUID(key["id"]))
        assert row is not None
        for name, value in fields.items():
            setattr(row, "push_state" if name == "state" else name, value)
        session.commit()


def failed(admin: Api, key: dict[str, Any], container_id: int | None = 3) -> None:
    set_push(
        admin,
        key,
        state=PushState.FAILED,
        container_id=container_id,
        push_due_at=None,
        push_attempts=1,
        push_error="card card-0001: certificate refused: self-signed",
    )


def refused(response: Any, status: int, type_: str, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == type_ and problem["status"] == status
    for word in words:
        assert word in problem["detail"], problem
    return problem


def test_retry_puts_a_failed_push_back_to_pending_due_now(
    admin: Api, setup: dict[str, Any]
) -> None:
    key = admin.issue(setup["lock"]["id"], setup["se"]["id"])
    failed(admin, key)
    before = dt.datetime.now(dt.UTC)
    retried = admin.ok("POST", f"/keys/{key['id']}/push/retry")
    push = retried["push"]
    assert push["state"] == "pending" and push["attempts"] == 0 and push["last_error"] is None
    assert push["container_id"] == 3  # still free: the retry writes the same container
    due = dt.datetime.fromisoformat(push["next_attempt_at"])
    assert before <= due <= dt.datetime.now(dt.UTC)
    assert retried == admin.ok("GET", f"/keys/{key['id']}")  # answered as GET /keys/{id}
    # Pending now: a second retry is refused, and says why.
    again = admin.post(f"/keys/{key['id']}/push/retry")
    refused(again, 409, NOT_RETRYABLE, "only a failed push can be retried", "pending")


def test_retry_gives_up_a_container_id_another_key_took(admin: Api, setup: dict[str, Any]) -> None:
    key = admin.issue(setup["lock"]["id"], setup["se"]["id"])
    other = admin.issue(setup["lock"]["id"], setup["se"]["id"])
    failed(admin, key, container_id=1)
    set_push(admin, other, state=PushState.INSTALLED, container_id=1, push_due_at=None)
    push = admin.ok("POST", f"/keys/{key['id']}/push/retry")["push"]
    assert push["state"] == "pending" and push["container_id"] is None  # a free one at its claim
    # Its claim gives it the lowest free id, not the one the other key holds.
    state = admin.client.app.state.elock  # type: ignore[attr-defined]
    with state.sessions() as session:
        jobs = provisioning.claim_due(
            session, state.box, now=dt.datetime.now(dt.UTC), lease=30, limit=10
        )
    assert [(str(j.key_uuid), j.container_id) for j in jobs] == [(key["id"], 2)]


def test_retry_refusals(admin: Api, auditor: Api, setup: dict[str, Any]) -> None:
    lock_id, se_id = setup["lock"]["id"], setup["se"]["id"]
    key = admin.issue(lock_id, se_id)
    retry = f"/keys/{key['id']}/push/retry"
    refused(admin.post(retry), 409, NOT_RETRYABLE, "pending")
    set_push(admin, key, state=PushState.INSTALLED, container_id=1, push_due_at=None)
    refused(admin.post(retry), 409, NOT_RETRYABLE, "installed already")
    # Only admins; the key is left as it was.
    failed(admin, key)
    refused(auditor.post(retry), 403, "urn:elock:problem:forbidden")
    assert admin.ok("GET", f"/keys/{key['id']}")["push"]["state"] == "failed"
    refused(admin.post(f"/keys/{uuid.uuid4()}/push/retry"), 404, "urn:elock:problem:not-found")
    assert admin.post("/keys/not-a-uuid/push/retry").status_code == 422
    assert admin.get(retry).status_code == 405
    # A revoked key: nothing of it is pushed again.
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    refused(admin.post(retry), 409, NOT_RETRYABLE, "revoked")
    # ...but a failed delete of its container is tried again.
    failed(admin, key)
    retried = admin.ok("POST", retry)["push"]
    assert (retried["state"], retried["attempts"], retried["last_error"]) == ("removing", 0, None)
    assert retried["container_id"] == 3 and retried["next_attempt_at"] is not None
    # An expired key is not worth installing.
    expired = admin.issue(lock_id, se_id)
    failed(admin, expired)
    with _sessions(admin)() as session:
        row = session.get(Key, uuid.UUID(expired["id"]))
        assert row is not None
        row.not_after = int(dt.datetime.now(dt.UTC).timestamp()) - 60
        session.commit()
    refused(admin.post(f"/keys/{expired['id']}/push/retry"), 409, NOT_RETRYABLE, "expired")
    # A failed key of a lock retired before retiring revoked its keys (older rows).
    legacy = admin.issue(lock_id, se_id)
    failed(admin, legacy)
    with _sessions(admin)() as session:
        lock = session.get(Lock, uuid.UUID(lock_id))
        assert lock is not None
        lock.retired_at, lock.secret_sealed = dt.datetime.now(dt.UTC), None
        session.commit()
    problem = refused(
        admin.post(f"/keys/{legacy['id']}/push/retry"), 409, "urn:elock:problem:lock-retired"
    )
    assert "retired" in problem["detail"]


def test_retire_revokes_the_keys_and_schedules_their_deletes(
    admin: Api, setup: dict[str, Any]
) -> None:
    lock_id, se_id = setup["lock"]["id"], setup["se"]["id"]
    never_pushed = admin.issue(lock_id, se_id)
    installed = admin.issue(lock_id, se_id, label="installed")
    set_push(admin, installed, state=PushState.INSTALLED, container_id=1, push_due_at=None)
    retrying = admin.issue(lock_id, se_id, label="retrying")  # its container may have landed
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    set_push(admin, retrying, container_id=2, push_due_at=later, push_attempts=2, push_leased=True)
    backing_off = admin.issue(lock_id, se_id, label="backing off")  # a try failed: waits 300 s
    later_still = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=300)
    set_push(admin, backing_off, container_id=4, push_due_at=later_still, push_attempts=5)
    broken = admin.issue(lock_id, se_id, label="failed")
    failed(admin, broken)
    revoked = admin.issue(lock_id, se_id, label="revoked earlier")
    revoked = admin.ok("POST", f"/keys/{revoked['id']}/revoke", json={"reason": "lost"})
    other_lock = admin.enrol("other-door")["lock"]
    bystander = admin.issue(other_lock["id"], se_id)
    version = admin.ok("GET", f"/locks/{lock_id}")["revocation"]["version"]

    retired = admin.ok("POST", f"/locks/{lock_id}/retire")
    assert retired["retired_at"] is not None

    def shown(key: dict[str, Any]) -> dict[str, Any]:
        return admin.ok("GET", f"/keys/{key['id']}")  # type: ignore[no-any-return]

    for key in (never_pushed, installed, retrying, backing_off, broken):
        now_shown = shown(key)
        assert now_shown["state"] == "revoked", now_shown
        assert now_shown["revoke_reason"] == "lock retired"
        assert now_shown["revoked_at"] == retired["retired_at"]
    assert shown(never_pushed)["push"]["state"] == "removed"  # never written: nothing to delete
    assert shown(broken)["push"]["state"] == "removed"
    for key, container_id in ((installed, 1), (retrying, 2), (backing_off, 4)):
        push = shown(key)["push"]
        assert push["state"] == "removing" and push["container_id"] == container_id
        assert push["attempts"] == 0 and push["last_error"] is None
    # An install in flight keeps its lease; the installed key's delete is due now, and so is
    # the one of a key waiting out a backoff (on main it waited for the backoff, up to 300 s).
    assert dt.datetime.fromisoformat(shown(retrying)["push"]["next_attempt_at"]) == later
    assert shown(backing_off)["push"]["next_attempt_at"] == retired["retired_at"]
    assert shown(revoked) == revoked  # revoked before: left as it was
    assert shown(bystander)["state"] == "active" and shown(bystander)["push"]["state"] == "pending"
    # The revocation list logic is untouched: no new version, no push for a retired lock.
    revocation = admin.ok("GET", f"/locks/{lock_id}")["revocation"]
    assert revocation["version"] == version and revocation["next_attempt_at"] is None
    # The worker can delete without the lock's secret (it is gone).
    state = admin.client.app.state.elock  # type: ignore[attr-defined]
    with state.sessions() as session:
        jobs = provisioning.claim_due(
            session, state.box, now=later + dt.timedelta(seconds=1), lease=30, limit=10
        )
    removing = {(str(j.key_uuid), j.container_id) for j in jobs if not j.install}
    assert removing == {(installed["id"], 1), (retrying["id"], 2), (backing_off["id"], 4)}
    assert {str(j.key_uuid) for j in jobs if j.install} == {bystander["id"]}
    # Revoking one of them now changes nothing.
    assert admin.ok("POST", f"/keys/{installed['id']}/revoke")["revoke_reason"] == "lock retired"


def _caused(error: PushError, cause: BaseException) -> PushError:
    error.__cause__ = cause  # as ``raise error from cause`` leaves it
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # Another RACS session holds the card (another worker): busy, never failed.
        (CardBusyError("s", "-708 s is locked by another session"), Verdict.BUSY),
        (CardBusyError("s", "-706 s is locked by another session"), Verdict.BUSY),
        # Other RACS refusals and lost connections: retried with backoff.
        (
            _caused(
                TransportError("RACS refused POWERON s: -808 000 reader gone"),
                RemoteRacsError("-808", 0, "reader gone"),
            ),
            Verdict.TRANSIENT,
        ),
        (
            _caused(TransportError("RACS refused: ?"), RemoteRacsError("-", 0, "?")),
            Verdict.TRANSIENT,
        ),
        (TransportError("cannot reach RACS: ConnectionRefusedError"), Verdict.TRANSIENT),
        (TlsSessionError("TLS#2 failed: bad record mac"), Verdict.TRANSIENT),
        # A status word after the commands went in proves nothing: the card may have done them.
        (UnconfirmedCommandsError(CardError("TLS RECORDS", 0x6F00)), Verdict.TRANSIENT),
        # The wrong card, or one outside the protocol: failed.
        (UntrustedCardError("s", SeCertificateError("self-signed")), Verdict.PERMANENT),
        (CardError("SELECT eLock", 0x6A82), Verdict.PERMANENT),
    ],
)
def test_which_failed_pushes_are_retried(error: PushError, expected: Verdict) -> None:
    assert verdict(error) is expected
