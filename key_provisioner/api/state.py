"""What the app holds for its lifetime: engine, sessions, secret box, worker."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from key_provisioner.core.config import Settings
from key_provisioner.core.crypto import SecretBox
from key_provisioner.worker import Worker


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    worker: Worker | None = None

    def kick_worker(self) -> None:
        if self.worker is not None:
            self.worker.kick()
