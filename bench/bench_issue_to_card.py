"""From ``POST /keys`` to the container in a card behind pcscd, as the demo runs it.

Every part is the real program, as ``elock demo`` starts them: the key server
(SQLite, its worker with ``[push]``), ``racs-server`` serving the vpcd reader
of pcscd, ``elock-se serve`` with a card personalized for TLS#2, and the
lock. Each round issues a key through the API and polls ``GET /keys/{id}``
(every 5 ms) until its push is ``installed``, then revokes it and polls
until ``removed``. The reference, in the same run and through the same RACS
server and card: one direct push by ``elock_push`` (RACS session, TLS#1 and
TLS#2 handshakes, the command, close), without API, database or worker.
Uses pcscd's vpcd port: run it alone. From the repository root::

    .venv/bin/python bench/bench_issue_to_card.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elock_common import pki
from elock_common.container import KeyContainer
from elock_demo import setup
from elock_demo.pcscd import VPCD_READER
from elock_demo.services import KeyServerApi, Running, Service, free_port, run
from elock_push import Outcome, SecureElementPush
from elock_testkit.push_harness import pusher_for

SEID = "bench-card-1"


def wait(condition: Callable[[], Any], timeout: float = 30.0) -> float:
    """Seconds until *condition* holds, polling every 5 ms."""
    began = time.perf_counter()
    while not condition():
        if time.perf_counter() - began > timeout:
            raise RuntimeError("timed out")
        time.sleep(0.005)
    return time.perf_counter() - began


@dataclass
class System:
    api: KeyServerApi
    lock_id: str
    se_id: str
    pusher: SecureElementPush  # the reference: the key server's push client, used directly


def start_system(work: Path, services: list[Running]) -> System:
    paths = pki.init_pki(work / "pki")
    card = work / "card.json"
    run("firmware.virtual.cli", "personalize", "--card", str(card), "--seid", SEID,
        "--issuer-cert", str(paths.se_issuer_ca.cert), "--issuer-key",
        str(paths.se_issuer_ca.key), "--key-server-ca", str(paths.key_server_ca.cert))  # fmt: skip
    services.append(setup.start_pcscd())
    serve = Service("virtual card", ["firmware.virtual.cli", "serve", "--card", str(card)],
                    work / "card.log", "serving")  # fmt: skip
    services.append(serve)
    serve.start()
    setup.wait_for_reader()
    racs_port = free_port(1)
    racs_config = setup.racs_config(work / "racs", paths.directory, SEID, VPCD_READER, racs_port)
    racs = Service("RACS server", ["racs.cli", "--config", str(racs_config), "--ready-line",
                   "ready {port}"], work / "racs" / "racs.log", "ready")  # fmt: skip
    services.append(racs)
    racs.start()
    config = setup.keyserver_config(work / "keyserver", paths.directory)
    cli = ["key_provisioner.cli", "--config", str(config)]
    run(*cli, "migrate")
    api = KeyServerApi(f"http://127.0.0.1:{free_port(1)}", "")
    api.token = run(*cli, "token", "create", "--role", "admin", "--name", "bench").strip()
    keyserver = Service("key server", [*cli, "serve", "--port", api.url.rsplit(":", 1)[1]],
                        work / "keyserver.log", "Uvicorn running on")  # fmt: skip
    services.append(keyserver)
    keyserver.start()
    port = free_port()
    enrolled = api.call("POST", "/locks", {"name": "bench", "host": "127.0.0.1", "port": port})
    setup.install_lock(work / "lock", enrolled["bundle"], work / "bundle.json")
    lock = Service("lock", ["lock_server.cli", "serve", "--config", str(work / "lock/lock.toml")],
                   work / "lock.log", "listening on")  # fmt: skip
    services.append(lock)
    lock.start()
    body = {"seid": SEID, "racs_server": f"127.0.0.1:{racs_port}"}
    se = api.call("POST", "/secure-elements", body)
    return System(api, enrolled["lock"]["id"], se["id"], pusher_for(paths, racs_port))


def measure(work: Path, rounds: int) -> list[str]:
    services: list[Running] = []
    try:
        system = start_system(work, services)
        api = system.api
        installs, removals = [], []
        for n in range(rounds):
            body = {
                "lock_id": system.lock_id,
                "secure_element_id": system.se_id,
                "label": f"Door {n}",
            }
            began = time.perf_counter()
            key = api.call("POST", "/keys", body)

            def state_is(state: str, key_id: str = key["id"]) -> Callable[[], bool]:
                return lambda: bool(api.call("GET", f"/keys/{key_id}")["push"]["state"] == state)

            wait(state_is("installed"))
            installs.append(time.perf_counter() - began)
            began = time.perf_counter()
            api.call("POST", f"/keys/{key['id']}/revoke", {"reason": "bench"})
            wait(state_is("removed"))
            removals.append(time.perf_counter() - began)
        direct = asyncio.run(direct_pushes(system.pusher, rounds))
    finally:
        for service in reversed(services):
            service.stop()
    med = statistics.median
    return [
        "| measure (card behind pcscd, RACS pcsc backend) | median | p90 |",
        "|---|---|---|",
        f"| `POST /keys` → push `installed` | {med(installs) * 1e3:.0f} ms | "
        f"{p90(installs) * 1e3:.0f} ms |",
        f"| `POST /keys/{{id}}/revoke` → push `removed` | {med(removals) * 1e3:.0f} ms | "
        f"{p90(removals) * 1e3:.0f} ms |",
        f"| reference: one direct push (elock_push, same RACS and card) | "
        f"{med(direct) * 1e3:.0f} ms | {p90(direct) * 1e3:.0f} ms |",
        f"| ratio issue→installed / direct push | {med(installs) / med(direct):.1f} | |",
    ]


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


async def direct_pushes(pusher: SecureElementPush, rounds: int) -> list[float]:
    times = []
    for n in range(rounds):
        container = KeyContainer(16, f"Direct {n}", "coaps://127.0.0.1/lock",
                                 f"direct-{n:04d}".encode(), b"D" * 16)  # fmt: skip
        began = time.perf_counter()
        result = await pusher.install(SEID, container)
        times.append(time.perf_counter() - began)
        assert result.outcome is Outcome.INSTALLED, result
        assert (await pusher.delete(SEID, 16)).outcome is Outcome.DELETED
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="elock-bench-") as tmp:
        print("\n".join(measure(Path(tmp), args.rounds)))


if __name__ == "__main__":
    main()
