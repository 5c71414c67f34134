"""The programs the demo starts, as an operator would run them, and a tiny API client.

Each service is the real command in a subprocess with its log in the work
directory; ``stop`` ends them in reverse order. The API client is the
standard library's, so the demo needs nothing the parts do not.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol


class StoryBrokenError(Exception):
    """A step of the demo did not do what the story says."""


class Running(Protocol):
    """Something the demo started and stops at the end (a program, or pcscd)."""

    @property
    def name(self) -> str: ...
    @property
    def log_path(self) -> Path | str: ...
    @property
    def proc(self) -> subprocess.Popen[bytes] | None: ...
    def stop(self) -> None: ...


def run(module: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", module, *args], input=stdin,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if done.returncode != 0:
        raise StoryBrokenError(f"{module} {args[0]} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    args: list[str]
    log_path: Path
    ready: str
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self, *, detach: bool = False) -> str:
        self._log = open(self.log_path, "ab")
        seen = self.log_path.stat().st_size
        command = [sys.executable, "-m", *self.args]
        self.proc = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=detach
        )
        deadline = time.monotonic() + 30
        while self.ready.encode() not in self.log_path.read_bytes()[seen:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise StoryBrokenError(f"{self.name} did not start: {self.log_path.read_text()}")
            time.sleep(0.05)
        return f"{self.name} is up (pid {self.proc.pid})"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        if self._log is not None:
            self._log.close()


@dataclass
class KeyServerApi:
    url: str
    token: str = field(repr=False)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            problem = exc.read().decode(errors="replace")
            raise StoryBrokenError(f"{method} {path}: {exc.code} {problem}") from None


def run_status(module: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run a ``--json`` command; its exit status and the JSON object of its last line."""
    done = subprocess.run([sys.executable, "-m", module, *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    try:
        out = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        out = {"stdout": done.stdout, "stderr": done.stderr}
    return done.returncode, out if isinstance(out, dict) else {"value": out}
