"""A real lock process for tests, and libcoap's clients to talk to it.

libcoap's ``coap-client`` exits 0 even when nothing got through, so every
helper here returns what it printed and the tests judge by that.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from elock_testkit.peers import require_tool
from elock_testkit.ports import free_udp_port
from elock_testkit.waiting import wait_for
from lock_server.relay import read_simulated_state

ELOCK_LOCK = [sys.executable, "-m", "lock_server.cli"]


@dataclass
class Key:
    identity: str
    psk: str
    key_id: str


@dataclass
class LockProcess:
    directory: Path
    port: int
    wrapper: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)  # elock-lock's own, before "serve"
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "lock.toml"

    @property
    def data_dir(self) -> Path:
        return self.directory / "var"

    @property
    def uri(self) -> str:
        return f"coaps://127.0.0.1:{self.port}/lock"

    @classmethod
    def create(cls, directory: Path, *, open_seconds: float = 0.5) -> LockProcess:
        lock = cls(directory, free_udp_port())
        cli(["init", "--dir", str(directory), "--port", str(lock.port)])
        text = lock.config.read_text().replace(
            "open_seconds = 5.0", f"open_seconds = {open_seconds}"
        )
        lock.config.write_text(text)
        return lock

    def start(self) -> None:
        log_path = self.directory / "lock.log"
        self._log = log = open(log_path, "ab")
        seen = log_path.stat().st_size
        self.proc = subprocess.Popen(
            [*self.wrapper, *ELOCK_LOCK, *self.options, "serve", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,  # a wrapper (faketime) forks: stop signals the whole group
        )
        proc = self.proc

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"lock exited: {log_path.read_text()}")
            return b"listening on" in log_path.read_bytes()[seen:]

        try:
            wait_for(listening, 15, "the lock's 'listening on' line")
        except BaseException:  # never leave a half-started lock (or its log file) behind
            self.stop()
            raise

    def __enter__(self) -> LockProcess:
        """``with LockProcess.create(...) as lock``: started here, stopped at the end."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def mint(self, *args: str) -> Key:
        out = json.loads(cli(["mint", "--config", str(self.config), "--json", *args]))
        return Key(out["identity"], out["psk"], out["key_id"])

    def mint_unchecked(self, **claims: int) -> Key:
        """A key the CLI would refuse to mint (already expired, say), made in-process."""
        from elock_common import mint_key
        from lock_server.config import load_config

        identity, key = mint_key(load_config(self.config).load_secret(), **claims)  # type: ignore[arg-type]
        return Key(key.identity.decode(), key.psk.decode(), identity.key_id_hex)

    def status(self) -> dict:  # type: ignore[type-arg]
        return json.loads(cli(["status", "--config", str(self.config), "--json"]))  # type: ignore[no-any-return]

    def audit(self) -> list[dict]:  # type: ignore[type-arg]
        from lock_server.store import LockStore

        store = LockStore(self.data_dir / "lock.sqlite3")
        try:
            return [r.as_json() for r in store.audit_rows(0, 500)]
        finally:
            store.close()

    def audit_reasons_once(self, reason: str, seconds: float = 5.0) -> list[str]:
        """Every audit row's reason, once one says ``reason``: an unauthenticated refusal
        is queued and committed by the lock's audit thread after its answer has gone."""
        reasons: list[str] = []

        def written() -> bool:
            reasons[:] = [row["reason"] for row in self.audit()]
            return any(reason in r for r in reasons)

        wait_for(written, seconds, f"an audit row saying {reason!r}")
        return reasons

    def relay_on(self) -> bool:
        return read_simulated_state(self.data_dir)

    def relay_events(self) -> list[str]:
        path = self.data_dir / "relay.log"
        return [line.split()[1] for line in path.read_text().splitlines()] if path.exists() else []


def cli(args: list[str]) -> str:
    done = subprocess.run(
        [*ELOCK_LOCK, *args], capture_output=True, text=True, env=_env(), timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(f"elock-lock {args[0]} failed: {done.stderr}")
    return done.stdout


def coap(
    tool: str, method: str, key: Key, uri: str, *, payload: str | None = None, timeout: int = 5
) -> str:
    """Run a libcoap client; return what it printed (stdout and stderr)."""
    exe = require_tool(tool)
    args = [exe, "-m", method, "-u", key.identity, "-k", key.psk, "-B", str(timeout)]
    if payload is not None:
        args += ["-t", "50", "-e", payload]
    done = subprocess.run([*args, uri], capture_output=True, text=True, timeout=timeout + 10)
    return done.stdout + done.stderr


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env
