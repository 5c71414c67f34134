"""The key server as its users run it: ``elock-keyserver migrate``, ``token
create`` and ``serve`` in subprocesses, configured by a TOML file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from elock_testkit.ports import free_tcp_port
from elock_testkit.waiting import wait_for
from key_provisioner.core.crypto import MasterKey

if TYPE_CHECKING:
    from elock_demo.services import KeyServerApi

ROOT = Path(__file__).resolve().parents[1]
FAST_WORKER = (
    "poll_seconds = 0.5\ncoap_timeout = 2\nretry_base = 0.3\nretry_max = 1.5\naudit_seconds = 1\n"
)


def env() -> dict[str, str]:
    out = dict(os.environ, PYTHONPATH=str(ROOT))
    out.pop("ELOCK_MASTER_KEY", None)
    return out


def run_module(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, env=env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Process:
    """A Python module run as a service; ``ready`` is the log line that says it is up."""

    args: list[str]
    log: Path
    ready: str
    proc: subprocess.Popen[bytes] | None = None
    wrapper: list[str] = field(default_factory=list)  # e.g. ip netns exec NAME

    def start(self, timeout: float = 20.0) -> None:
        seen = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.wrapper, sys.executable, "-m", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env(),
                start_new_session=True,  # stop() signals the group: a wrapper forks
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            return self.ready.encode() in self.log.read_bytes()[seen:]

        try:
            wait_for(ready, timeout, f"{self.args[0]} start")
        except BaseException:  # never leave a half-started server behind
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                # uvicorn waits for open connections (a lock's sync WebSocket) before it
                # exits; a test that is over does not wait for that.
                self._signal(signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def _signal(self, sig: int) -> None:
        """Its process group when it leads one (uvicorn's workers go too), else itself."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:  # started without a session of its own
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)


@dataclass
class LiveKeyServer:
    url: str
    token: str
    process: Process


def start_keyserver(
    directory: Path,
    database_url: str,
    *,
    worker: bool,
    sync: str = "",
    host: str = "127.0.0.1",
    wrapper: list[str] | None = None,
) -> LiveKeyServer:
    """Migrate, make an admin token and serve, exactly as an operator would.

    ``sync``: extra lines of the ``[sync]`` table; its ``url`` (what locks dial) is
    this server's own ``/sync/lock``. ``wrapper`` runs ``serve`` inside something
    (a network namespace)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "master.key").write_text(MasterKey.generate().to_text())
    config = directory / "keyserver.toml"
    worker_table = FAST_WORKER if worker else "enabled = false\n"
    port = free_tcp_port()
    config.write_text(
        f"[keyserver]\ndatabase_url = {json.dumps(database_url)}\n"
        f'master_key_file = "master.key"\n\n[worker]\n{worker_table}'
        f'\n[sync]\nurl = "ws://{host}:{port}/sync/lock"\n{sync}'
    )
    cli = ["key_provisioner.cli", "--config", str(config)]
    assert "database at migration" in run_module(*cli, "migrate")
    token = run_module(*cli, "token", "create", "--role", "admin", "--name", "tests").strip()
    process = Process(
        [*cli, "serve", "--host", host, "--port", str(port)],
        directory / "keyserver.log",
        "Uvicorn running on",  # after the bind; "Application startup complete" comes before it
        wrapper=wrapper or [],
    )
    process.start()
    return LiveKeyServer(f"http://{host}:{port}", token, process)


def start_demo_keyserver(
    directory: Path,
    pki_dir: Path,
    *,
    worker_extra: str = "",
    serve: tuple[str, ...] = ("serve",),
    ready: str = "Uvicorn running on",
    timeout: float = 20.0,
) -> tuple[KeyServerApi, Process, list[str]]:
    """The key server as the demo configures it (SQLite, a fast worker, ``[push]`` from the
    PKI in ``pki_dir``), migrated, with an admin token, serving on a free port.

    ``worker_extra``: more lines of its ``[worker]`` table; ``serve``: the CLI words that
    start it (global options first), the port is added. Returns the API, the process and
    the CLI prefix (``python -m`` arguments) for more commands on the same config.
    """
    from elock_demo import setup
    from elock_demo.services import KeyServerApi

    port = free_tcp_port()
    # the lock dials this (it goes into its bundle): revocations reach it over that connection
    config = setup.keyserver_config(directory, pki_dir, f"ws://127.0.0.1:{port}/sync/lock")
    if worker_extra:
        config.write_text(config.read_text().replace("[push]", f"{worker_extra}\n[push]"))
    cli = ["key_provisioner.cli", "--config", str(config)]
    run_module(*cli, "migrate")
    token = run_module(*cli, "token", "create", "--role", "admin", "--name", "e2e").strip()
    process = Process([*cli, *serve, "--port", str(port)], directory / "keyserver.log", ready)
    process.start(timeout)
    return KeyServerApi(f"http://127.0.0.1:{port}", token), process, cli
