"""What the app holds for its lifetime: engine, sessions, secret box, worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from key_provisioner.core.config import PUSH_NOT_CONFIGURED, Settings
from key_provisioner.core.crypto import SecretBox
from key_provisioner.se_push import PushClients
from key_provisioner.services.sync_gate import SyncGate
from key_provisioner.sync.notify import Gate, LockNotifier
from key_provisioner.worker import Worker


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    push_clients: PushClients | None = None
    worker: Worker | None = None
    card_sync_gate: SyncGate | None = None  # card syncs dialled in (``routes.card_sync``)
    notifier: LockNotifier = field(default_factory=LockNotifier)
    lock_sync_gate: Gate = field(default_factory=Gate)  # locks dialled in (``sync.endpoint``)

    @property
    def push_note(self) -> str | None:
        """Why a new key's push will wait, if it will (for ``push.error`` of the key)."""
        return PUSH_NOT_CONFIGURED if self.push_clients is None else None

    def kick_worker(self) -> None:
        if self.worker is not None:
            self.worker.kick()
