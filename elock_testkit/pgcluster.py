"""A throwaway PostgreSQL cluster for tests and benchmarks.

``initdb`` into a fresh directory under /tmp, owned by the ``postgres`` user
when we run as root (PostgreSQL refuses to run as root), then ``pg_ctl start``
on a free port with its unix socket in that directory. ``fsync=off``: the
data is thrown away anyway.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from elock_testkit.ports import free_tcp_port

PREFIX = "elock-pg-"


def find_bin(name: str) -> str | None:
    """The newest installed PostgreSQL's ``name`` (Debian keeps them off PATH)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return found[-1] if found else shutil.which(name)


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class PgCluster:
    directory: Path
    port: int
    pg_ctl: str

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.directory}&port={self.port}"

    @classmethod
    def start(cls, initdb: str) -> PgCluster:
        reap_stale(Path(initdb).with_name("pg_ctl"))
        directory = Path(tempfile.mkdtemp(prefix=PREFIX))
        (directory / "owner.pid").write_text(str(os.getpid()))
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        cluster = cls(directory, free_tcp_port(), str(Path(initdb).with_name("pg_ctl")))
        _run(
            _as_postgres(
                [
                    initdb,
                    "-D",
                    str(cluster.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            )
        )
        options = (
            f"-p {cluster.port} -k {directory} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        _run(
            _as_postgres(
                [
                    cluster.pg_ctl,
                    "-D",
                    str(cluster.data),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(directory / "postgres.log"),
                    "start",
                ]
            )
        )
        return cluster

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _run(_as_postgres([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"]))
        shutil.rmtree(self.directory, ignore_errors=True)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.directory),
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        )

    def create_database(self, name: str, template: str | None = None) -> str:
        with self.admin() as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{clause}')  # type: ignore[arg-type]
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def reap_stale(pg_ctl: str) -> None:
    """Stop clusters whose test run died without stopping them (a killed pytest)."""
    for directory in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((directory / "owner.pid").read_text())
            os.kill(owner, 0)
            continue  # its run is still going
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # not ours to judge
        if (directory / "data" / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                _run(
                    _as_postgres(
                        [pg_ctl, "-D", str(directory / "data"), "-m", "immediate", "-w", "stop"]
                    )
                )
        shutil.rmtree(directory, ignore_errors=True)


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
