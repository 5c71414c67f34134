"""The servers of ``bench_lock_sync.py``: a throwaway PostgreSQL, N enrolled locks, and two
``elock-keyserver serve`` processes on that database."""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, select

from elock_common import LockSecret
from elock_testkit.liveserver import env, free_tcp_port
from elock_testkit.pgcluster import PgCluster, find_bin
from key_provisioner.core.crypto import MasterKey, SecretBox
from key_provisioner.db.engine import make_engine, make_sessions
from key_provisioner.db.migrate import upgrade
from key_provisioner.db.models import Lock
from key_provisioner.services import secure_elements, tokens
from key_provisioner.services.admin_audit import Actor
from key_provisioner.services.secure_elements import NewSecureElement

ROOT = Path(__file__).resolve().parents[1]


def _fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Stack:
    directory: Path
    cluster: PgCluster
    database_url: str
    config: Path
    token: str
    se_id: str
    locks: list[tuple[str, str]]  # (lock id, secret)
    ports: list[int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(cls, directory: Path, count: int) -> Stack:
        initdb = find_bin("initdb")
        if initdb is None:
            raise SystemExit("bench: PostgreSQL's initdb is not installed")
        cluster = PgCluster.start(initdb)
        try:
            return cls._build(directory, cluster, count)
        except BaseException:
            cluster.stop()
            raise

    @classmethod
    def _build(cls, directory: Path, cluster: PgCluster, count: int) -> Stack:
        url = cluster.create_database("elock_bench_sync")
        engine = make_engine(url)
        upgrade(engine)
        master = MasterKey.generate()
        (directory / "master.key").write_text(master.to_text())
        box, sessions = SecretBox(master), make_sessions(engine)
        locks: list[tuple[str, str]] = []
        now = dt.datetime.now(dt.UTC)
        with sessions() as session:
            for n in range(count):  # as services.locks.enrol, in one transaction
                secret = LockSecret.generate()
                lock = Lock(id=uuid.uuid4(), name=f"bench-{n}", host="192.0.2.1", port=5684,
                            lock_tag=secret.lock_tag.hex(), enrolled_at=now,
                            revocation_version=0, confirmed_version=0, push_attempts=0,
                            audit_cursor=0, audit_generation=0)  # fmt: skip
                lock.secret_sealed = box.seal(secret, lock.id)
                session.add(lock)
                locks.append((str(lock.id), secret.to_text()))
            session.commit()
            row, token = tokens.create(session, tokens.Role.ADMIN, "bench")
            actor = Actor(token_id=row.id, client="bench")
            se = secure_elements.register(
                session, NewSecureElement("bench-se", "127.0.0.1:7443"), actor=actor
            )
            se_id = str(se.id)
        engine.dispose()
        ports = [free_tcp_port(), free_tcp_port()]
        config = directory / "keyserver.toml"
        config.write_text(
            f'[keyserver]\ndatabase_url = {json.dumps(url)}\nmaster_key_file = "master.key"\n'
            f'\n[worker]\nenabled = false\n\n[sync]\nurl = "ws://127.0.0.1:{ports[0]}/sync/lock"\n'
        )
        stack = cls(directory, cluster, url, config, token, se_id, locks, ports)
        stack._start_servers()
        return stack

    def _start_servers(self) -> None:
        self.procs = []
        for n, port in enumerate(self.ports):
            log = self.directory / f"keyserver-{n}.log"
            seen = log.stat().st_size if log.exists() else 0
            with open(log, "ab") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "key_provisioner.cli", "--config", str(self.config),
                     "serve", "--port", str(port)],
                    stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=ROOT,
                    preexec_fn=_fd_limit, start_new_session=True,
                ))  # fmt: skip
            deadline = time.monotonic() + 60
            while b"Uvicorn running on" not in log.read_bytes()[seen:]:
                if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                    raise SystemExit(f"bench: key server {n} did not start: {log.read_text()}")
                time.sleep(0.05)

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def sync_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}/sync/lock" for port in self.ports]

    def connected(self) -> int:
        engine = make_engine(self.database_url)
        try:
            with make_sessions(engine)() as session:
                query = select(func.count()).where(Lock.sync_session.is_not(None))
                return int(session.scalar(query.select_from(Lock)) or 0)
        finally:
            engine.dispose()

    def revoke_new_key(self, lock_id: str) -> tuple[int, float]:
        """Through process A: issue a key and revoke it; (the lock's version, answered at)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{self.ports[0]}", headers=headers,
                          timeout=30) as api:  # fmt: skip
            key = api.post("/keys", json={"lock_id": lock_id, "secure_element_id": self.se_id})
            assert key.status_code == 201, key.text
            revoked = api.post(f"/keys/{key.json()['id']}/revoke")
            answered = time.time()
            assert revoked.status_code == 200, revoked.text
            version = int(api.get(f"/locks/{lock_id}").json()["revocation"]["version"])
        return version, answered

    def restart(self) -> None:
        self._stop_servers()
        self._start_servers()

    def _stop_servers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def stop(self) -> None:
        try:
            self._stop_servers()
        finally:
            self.cluster.stop()
