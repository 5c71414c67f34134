"""The background worker: pushes revocations to locks, pulls their audit logs, and
installs and deletes key containers in secure elements through RACS (cards
reached through their host are synced when the host dials: ``api.card_sync``).

It runs as an asyncio task inside each server process. Work is found in the
database, not in memory: a revoke makes a push due and ``kick()`` only wakes
the worker early, so several processes or replicas share the work (claims use
``SKIP LOCKED`` on PostgreSQL) and a restart forgets nothing. Database calls
run in threads; CoAP runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from elock_push import PushError
from key_provisioner.core.config import WorkerSettings
from key_provisioner.core.crypto import SecretBox
from key_provisioner.db.base import utcnow
from key_provisioner.lock_admin import AdminSession, LockAdminError
from key_provisioner.observability import metrics
from key_provisioner.se_push import PushClients, Verdict, verdict
from key_provisioner.se_visit import CardWork, visit
from key_provisioner.services import audit, provisioning, revocations
from key_provisioner.services.audit import AuditJob
from key_provisioner.services.provisioning import SePushJob
from key_provisioner.services.revocations import PushJob

log = logging.getLogger(__name__)

T = TypeVar("T")


class Worker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        settings: WorkerSettings,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        push_clients: PushClients | None = None,
    ) -> None:
        self._sessions = sessions
        self._push_clients = push_clients
        self._box = box
        self._settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # How long a claimed lock is ours. A visit is a few exchanges; one that
        # runs longer (a long audit backlog) may be visited twice, which is
        # harmless: pushes and audit storage are idempotent.
        self._lease = 6 * settings.coap_timeout + 5
        # A secure-element visit is at most two RACS sessions (LIST, then the
        # commands); retrying one that outlived its lease is idempotent too.
        timeout = push_clients.settings.timeout if push_clients else 30.0
        self._se_lease = 2 * timeout + 5

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="elock-keyserver-worker")

    async def stop(self) -> None:
        """Finish the round in progress (bounded), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        grace = self._settings.coap_timeout + 2.0
        done, _ = await asyncio.wait([task], timeout=grace)
        if not done:
            log.warning("worker still busy after %g s; cancelling its round", grace)
            task.cancel()
            await asyncio.wait([task], timeout=grace)

    def kick(self) -> None:
        """Wake the worker now; safe to call from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
                metrics.worker_round(ok=True)
            except Exception:  # a database outage must not end the worker
                log.exception("worker round failed; retrying")
                metrics.worker_round(ok=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_seconds)

    async def run_once(self) -> int:
        """One round: claim what is due, visit those locks; returns the visits."""
        now = self._clock()
        pushes = await asyncio.to_thread(self._claim, revocations.claim_due_pushes, now)
        pulls = await asyncio.to_thread(self._claim, audit.claim_due_pulls, now)
        se_jobs: list[SePushJob] = []
        if self._push_clients is not None:
            se_jobs = await asyncio.to_thread(self._claim_se, now)
        cards: dict[tuple[str, str], list[SePushJob]] = {}
        for se_job in se_jobs:  # one RACS session per card for all its due keys
            cards.setdefault((se_job.racs_server or "", se_job.seid), []).append(se_job)
        await asyncio.gather(
            *(self._push(job) for job in pushes),
            *(self._pull(job) for job in pulls),
            *(self._se_visit(group) for group in cards.values()),
        )
        return len(pushes) + len(pulls) + len(se_jobs)

    def _claim(self, claim: Callable[..., list[Any]], now: dt.datetime) -> list[Any]:
        with self._sessions() as session:
            return claim(session, self._box, now=now, lease=self._lease, limit=self._settings.batch)

    def _claim_se(self, now: dt.datetime) -> list[SePushJob]:
        with self._sessions() as session:
            return provisioning.claim_due(
                session, self._box, now=now, lease=self._se_lease, limit=self._settings.batch
            )

    async def _se_visit(self, jobs: list[SePushJob]) -> None:
        """Install and delete the due containers of one card, in one TLS#2 session."""
        assert self._push_clients is not None
        racs_server, seid = jobs[0].racs_server, jobs[0].seid
        assert racs_server is not None  # the worker claims RACS cards only
        pusher = self._push_clients.for_server(racs_server)
        try:
            async with pusher.session(seid) as card:
                work = await visit(card, jobs)
        except PushError as exc:  # RACS unreachable: nothing was tried
            work = CardWork(open=list(jobs), error=exc)
        for settled in (*work.done, *work.refused):
            job = settled.job
            log.info("card %s: %s of container %d: %s %s", seid,
                     "install" if job.install else "delete", job.container_id,
                     settled.outcome, settled.text)  # fmt: skip
            done = settled in work.done
            action = provisioning.record_done if done else provisioning.record_failed
            await self._se_record(job, action, settled.text)
        if work.error is not None and work.open:
            error = work.error
            record = self._se_record_for(verdict(error), f"card {seid} via {pusher}", error.reason)
            for job in work.open:
                await self._se_record(job, record, error.reason)

    def _se_record_for(self, kind: Verdict, where: str, why: str) -> Callable[..., object]:
        """How to record a push that failed: see ``se_push.verdict``."""
        if kind is Verdict.BUSY:
            log.info("push to %s: card busy, will retry soon: %s", where, why)
            return self._record_busy
        if kind is Verdict.PERMANENT:
            log.warning("push to %s refused: %s", where, why)
            return provisioning.record_failed
        log.info("push to %s failed, will retry: %s", where, why)
        return self._record_retry

    def _record_busy(
        self, session: Session, job: SePushJob, why: str, *, now: dt.datetime
    ) -> object:
        delay = self._settings.retry_base
        return provisioning.record_busy(session, job, why, now=now, delay=delay)

    def _record_retry(
        self, session: Session, job: SePushJob, why: str, *, now: dt.datetime
    ) -> object:
        base, cap = self._settings.retry_base, self._settings.retry_max
        return provisioning.record_retry(session, job, why, now=now, base=base, cap=cap)

    async def _se_record(self, job: SePushJob, record: Callable[..., object], text: str) -> None:
        metrics.card_push(record)
        await self._db(lambda s: record(s, job, text, now=self._clock()))
        self._wake.set()  # a key revoked mid-install has its delete due now

    def _session(self, job: PushJob | AuditJob) -> AdminSession:
        return AdminSession(
            job.host,
            job.port,
            job.secret,
            timeout=self._settings.coap_timeout,
            key_seconds=self._settings.admin_key_seconds,
        )

    async def _push(self, job: PushJob) -> None:
        try:
            async with self._session(job) as lock:
                held = await lock.push_revocations(job.version, job.revoked)
                if held < job.version:  # a lock takes any list above its own
                    raise LockAdminError(f"lock answered version {held} to a push of {job.version}")
                lock_count = await self._count(lock) if held > job.version else None
        except LockAdminError as exc:
            log.info("revocation push v%d to lock %s failed: %s", job.version, job.lock_id, exc,
                     extra={"lock_id": str(job.lock_id), "outcome": "failed"})  # fmt: skip
            metrics.lock_push(confirmed=False)
            settings, error = self._settings, str(exc)
            await self._db(
                lambda s: revocations.record_failure(
                    s,
                    job.lock_id,
                    error,
                    now=self._clock(),
                    base=settings.retry_base,
                    cap=settings.retry_max,
                )
            )
            return
        log.info("lock %s holds revocation version %d (pushed %d)", job.lock_id, held, job.version,
                 extra={"lock_id": str(job.lock_id), "outcome": "confirmed"})  # fmt: skip
        metrics.lock_push(confirmed=True)
        ack = await self._db(
            lambda s: revocations.record_ack(s, job.lock_id, held, now=self._clock())
        )
        if ack.renumbered:
            log.warning(
                "lock %s held revocation version %d (%s key(s)), above the server's %d: it kept"
                " its state from an earlier enrolment, or this server's database went back. The"
                " server's list (%d key(s)) replaces the lock's, as version %d",
                job.lock_id, held, "?" if lock_count is None else lock_count, job.version,
                len(job.revoked), ack.version,
            )  # fmt: skip
        self._wake.set()  # its audit pull is due now, or the list again

    @staticmethod
    async def _count(lock: AdminSession) -> int | None:
        """How many keys the lock holds revoked (for the log), if it says."""
        try:
            return (await lock.revocation_state())[1]
        except LockAdminError:
            return None

    async def _pull(self, job: AuditJob) -> None:
        next_at = self._clock() + dt.timedelta(seconds=self._settings.audit_seconds)
        try:
            async with self._session(job) as lock:
                read = await lock.read_audit(job.since, job.anchor)
        except LockAdminError as exc:
            log.info("audit pull from lock %s failed: %s", job.lock_id, exc)
        else:
            stored = await self._db(
                lambda s: audit.store_rows(
                    s, job, read.rows, restarted=read.restarted is not None, now=self._clock()
                )
            )
            if stored.restarted:
                log.warning(
                    "lock %s: its audit log started again (%s; its state was lost or"
                    " replaced): read again from the start as generation %d, %d new row(s);"
                    " its revocation list is pushed again",
                    job.lock_id, read.restarted, stored.generation, stored.rows,
                )  # fmt: skip
            log.debug("pulled %d audit row(s) from lock %s", stored.rows, job.lock_id)
            metrics.audit_rows_ingested(stored.rows)
            # The lock is back: a push waiting out its backoff can go now.
            await self._db(lambda s: revocations.reachable(s, job.lock_id, now=self._clock()))
            self._wake.set()
        await self._db(lambda s: audit.pull_done(s, job.lock_id, next_at=next_at))

    async def _db(self, action: Callable[[Session], T]) -> T:
        def run() -> T:
            with self._sessions() as session:
                return action(session)

        return await asyncio.to_thread(run)
