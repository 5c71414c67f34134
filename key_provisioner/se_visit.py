"""One visit to one card: every due install and delete of it, in one TLS#2 session.

The worker (RACS) and a host's sync (``api.card_sync``) both run ``visit`` on
a ``CardSession``; only how the session reaches the card differs. A visit
never raises a push failure: it says which jobs are settled (done or refused
for good) and which are still open because the session broke, with the error,
and the caller records each through ``services.provisioning``.

Deletes are checked against the card's LIST first, in the same session: a
container id may hold another key (written by hand, or ours never landed and
the id was reused), and only what is ours is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from elock_push import CardSession, Delete, Install, Outcome, PushError
from key_provisioner.services.provisioning import SePushJob

_DONE = {Outcome.INSTALLED, Outcome.ALREADY_PRESENT, Outcome.DELETED, Outcome.NOT_FOUND}


@dataclass(frozen=True)
class Settled:
    job: SePushJob
    outcome: str  # the card's word ("installed", "already present", ...) or "skipped"
    text: str = ""  # a note when done, why when refused


@dataclass
class CardWork:
    done: list[Settled] = field(default_factory=list)
    refused: list[Settled] = field(default_factory=list)
    open: list[SePushJob] = field(default_factory=list)  # the session broke first
    error: PushError | None = None

    @property
    def added(self) -> int:
        return sum(1 for s in self.done if s.job.install)

    @property
    def removed(self) -> int:
        return sum(1 for s in self.done if not s.job.install)

    @property
    def failed(self) -> int:
        return len(self.refused) + len(self.open)

    def reason(self) -> str:
        if self.error is not None:
            return self.error.reason
        return self.refused[0].text if self.refused else ""

    def settle(self, job: SePushJob, outcome: str, *, ok: bool, text: str) -> None:
        self.open.remove(job)
        (self.done if ok else self.refused).append(Settled(job, outcome, text))


async def visit(card: CardSession, jobs: list[SePushJob], *, opened: bool = False) -> CardWork:
    """Open the session (unless *opened*), LIST if a delete is due, run the commands, close."""
    work = CardWork(open=list(jobs))
    try:
        if not opened:
            await card.open()
        deletes = [job for job in jobs if not job.install]
        if deletes:
            on_card = {c.container_id: c.identity for c in await card.list_containers()}
            for job in deletes:
                held = on_card.get(job.container_id)
                if held is None or held != job.identity:
                    note = (
                        ""
                        if held is None
                        else (f"container {job.container_id} holds another key; left alone")
                    )
                    work.settle(job, "skipped", ok=True, text=note)
        todo = list(work.open)
        ops = [Install(j.container) if j.container is not None else Delete(j.container_id)
               for j in todo]  # fmt: skip
        results = (await card.run(ops))[0] if ops else []
        for job, result in zip(todo, results, strict=True):
            what = "install" if job.install else "delete"
            ok = result.outcome in _DONE
            detail = result.detail or result.outcome.value
            why = "" if ok else f"the card refused the {what}: {detail}"
            work.settle(job, result.outcome.value, ok=ok, text=why)
        await card.close()
    except PushError as exc:
        work.error = exc
    return work
