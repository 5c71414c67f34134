"""The background worker: installs and deletes key containers in secure elements through
RACS (cards reached through their host are synced when the host dials: ``api.card_sync``;
locks dial in too: ``key_provisioner.sync``).

It runs as an asyncio task inside each server process. Work is found in the
database, not in memory: an issue or a revoke makes a push due and ``kick()``
only wakes the worker early, so several processes or replicas share the work
(claims use ``SKIP LOCKED`` on PostgreSQL) and a restart forgets nothing.
Database calls run in threads.

Locks are not visited: each lock dials the key server and keeps its own
connection (``key_provisioner.sync``), over which revocations, audit rows and
the time travel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from elock_push import PushError, TransportError
from key_provisioner.core.config import WorkerSettings
from key_provisioner.core.crypto import SecretBox
from key_provisioner.db.base import utcnow
from key_provisioner.observability import metrics
from key_provisioner.se_push import PushClients, Verdict, verdict
from key_provisioner.se_visit import CardWork, visit
from key_provisioner.services import provisioning
from key_provisioner.services.provisioning import SePushJob

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
        grace = (self._push_clients.settings.timeout if self._push_clients else 5.0) + 2.0
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
        """One round: claim what is due, visit those cards; returns the jobs."""
        now = self._clock()
        se_jobs: list[SePushJob] = []
        if self._push_clients is not None:
            se_jobs = await asyncio.to_thread(self._claim_se, now)
        cards: dict[tuple[str, str], list[SePushJob]] = {}
        for se_job in se_jobs:  # one RACS session per card for all its due keys
            cards.setdefault((se_job.racs_server or "", se_job.seid), []).append(se_job)
        await asyncio.gather(*(self._se_visit(group) for group in cards.values()))
        return len(se_jobs)

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
        except Exception as exc:  # a bug of ours: the keys still get a retry and a last_error
            log.exception("push to card %s: unexpected error", seid)
            unexpected = TransportError(f"unexpected error in the push ({type(exc).__name__})")
            work = CardWork(open=list(jobs), error=unexpected)
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

    async def _db(self, action: Callable[[Session], T]) -> T:
        def run() -> T:
            with self._sessions() as session:
                return action(session)

        return await asyncio.to_thread(run)
