"""The parts of a host sync as their users run them, each in a place of the test's choosing.

A ``Place`` is where a process runs: the test's own network (loopback) or a
network namespace (``tests.netns``). The key server is ``elock-keyserver
serve`` with a ``[push]`` table, the card is made by ``elock-se personalize
--key-server``, the lock by ``elock-lock init --bundle`` from its enrolment,
the sync is ``coap-open --sync``, and the admin API is called from the key
server's own place (in a namespace the test's network cannot reach it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from elock_common import pki
from elock_testkit.cardproc import personalize_with_identity
from elock_testkit.liveserver import FAST_WORKER, env, run_module
from elock_testkit.waiting import wait_for
from key_provisioner.core.crypto import MasterKey

PY = sys.executable
Spawn = Callable[..., "subprocess.Popen[bytes]"]

# Runs in the key server's place: one admin API call, printing "status json".
_CALL = (
    "import json,sys,urllib.request,urllib.error\n"
    "m,u,t,b=sys.argv[1:5]\n"
    "r=urllib.request.Request(u,method=m,data=b.encode() or None,headers={"
    "'Authorization':'Bearer '+t,'Content-Type':'application/json'})\n"
    "try:\n    resp=urllib.request.urlopen(r,timeout=20)\n"
    "    print(resp.status, resp.read().decode())\n"
    "except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n"
)


@dataclass
class Place:
    prefix: list[str]  # e.g. ["ip", "netns", "exec", NAME]; [] for the test's own network

    def args(self, args: Sequence[str]) -> list[str]:
        return [*self.prefix, *args]

    def run(self, args: Sequence[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(args), capture_output=True, text=True, env=env(),
                              timeout=timeout, check=False)  # fmt: skip


def wait_for_line(log: Path, line: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    def seen() -> bool:
        text = log.read_text(errors="replace") if log.exists() else ""
        assert proc.poll() is None, f"{log.name} ended:\n{text[-3000:]}"
        return line in text

    wait_for(seen, timeout, f"{log.name}: {line!r}")


def start(spawn: Spawn, place: Place, args: Sequence[str], log: Path, ready: str) -> Any:
    out: IO[bytes] = open(log, "ab")
    try:
        proc = spawn(place, args, out)
    finally:
        out.close()
    wait_for_line(log, ready, proc, 30)
    return proc


@dataclass
class KeyServer:
    place: Place
    url: str  # as seen from the key server's own place
    token: str

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = "" if body is None else json.dumps(body)
        done = self.place.run([PY, "-c", _CALL, method, self.url + path, self.token, data])
        status, _, text = done.stdout.partition(" ")
        assert status.isdigit(), done.stderr
        return int(status), json.loads(text) if text.strip() else None

    def ok(self, method: str, path: str, body: object = None, status: int = 200) -> Any:
        got, answer = self.call(method, path, body)
        assert got == status, (got, answer)
        return answer


def keyserver_config(directory: Path, paths: pki.PkiPaths, push_extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "master.key").write_text(MasterKey.generate().to_text())
    user = paths.racs_users["keyserver"]
    push = {
        "racs_client_cert": user.cert, "racs_client_key": user.key,
        "racs_ca": paths.racs_ca.cert, "tls2_cert": paths.key_server.cert,
        "tls2_key": paths.key_server.key, "se_issuer_ca": paths.se_issuer_ca.cert,
    }  # fmt: skip
    lines = "".join(f"{k} = {json.dumps(str(v))}\n" for k, v in push.items())
    config = directory / "keyserver.toml"
    db = json.dumps(f"sqlite:///{directory / 'keys.sqlite3'}")
    config.write_text(
        f'[keyserver]\ndatabase_url = {db}\nmaster_key_file = "master.key"\n\n'
        f"[worker]\n{FAST_WORKER}\n[push]\ntimeout = 10\n{push_extra}{lines}"
    )
    return config


def start_keyserver(
    spawn: Spawn,
    place: Place,
    directory: Path,
    paths: pki.PkiPaths,
    *,
    listen: str,
    port: int,
    push_extra: str = "",
) -> KeyServer:
    config = keyserver_config(directory, paths, push_extra)
    cli = ["key_provisioner.cli", "--config", str(config)]
    run_module(*cli, "migrate")
    token = run_module(*cli, "token", "create", "--role", "admin", "--name", "tests").strip()
    start(spawn, place, [PY, "-m", *cli, "serve", "--host", listen, "--port", str(port)],
          directory / "keyserver.log", "Uvicorn running on")  # fmt: skip
    return KeyServer(place, f"http://127.0.0.1:{port}", token)


def personalize_card(directory: Path, paths: pki.PkiPaths, seid: str, key_server: str) -> Path:
    card = directory / f"{seid}.json"
    personalize_with_identity(card, paths, seid, "--key-server", key_server)
    return card


def enrol_lock(
    spawn: Spawn, place: Place, api: KeyServer, directory: Path, port: int
) -> tuple[str, Any]:
    """Enrol a lock at 127.0.0.1:port of *place* and start it there; its id and process."""
    enrolled = api.ok("POST", "/locks", {"name": "front", "host": "127.0.0.1", "port": port}, 201)
    bundle = directory / "bundle.json"
    bundle.write_text(json.dumps(enrolled["bundle"]))
    lock_dir = directory / "lock"
    run_module("lock_server.cli", "init", "--dir", str(lock_dir), "--bundle", str(bundle))
    config = lock_dir / "lock.toml"
    config.write_text(config.read_text().replace("open_seconds = 5.0", "open_seconds = 0.2"))
    proc = start(spawn, place, [PY, "-m", "lock_server.cli", "serve", "--config", str(config)],
                 directory / "lock.log", "listening on")  # fmt: skip
    return str(enrolled["lock"]["id"]), proc


def coap_open(place: Place, *args: str, timeout: float = 60) -> tuple[int, Any]:
    """``coap-open --json ARGS`` in *place*: its exit status and its JSON answer."""
    done = place.run([PY, "-m", "key_client.cli", "--json", *args], timeout=timeout)
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else {"stderr": done.stderr}
