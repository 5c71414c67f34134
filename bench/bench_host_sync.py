"""From ``POST /keys`` to installed through a host sync, against the RACS path, in one run.

The system of ``bench_issue_to_card.py`` (key server with its worker, pcscd,
``racs-server``, a card behind pcscd for the RACS path, the lock), plus a
second card registered as reached through its host (no RACS server) and
personalized with ``--key-server``. Per round, for each path:

- RACS: ``POST /keys``, poll ``GET /keys/{id}`` every 5 ms until ``installed``
  (the worker, woken by the issue, pushes through RACS);
- host: ``POST /keys``, then one sync as ``coap-open --sync`` runs it
  (``key_client.sync.sync_card`` over a WebSocket to the key server, card in
  this process), then ``GET /keys/{id}`` must say ``installed``.

Also: a sync with nothing due (the cost of an idle phone's "Update keys").
Uses pcscd's vpcd port: run it alone. From the repository root::

    .venv/bin/python bench/bench_host_sync.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_issue_to_card import System, p90, start_system, wait

from elock_demo.services import Running, run
from key_client.cards import connect
from key_client.sync import SyncResult, sync_card

HOST_SEID = "bench-phone-1"


def sync_once(card: Path) -> SyncResult:
    with connect(card_file=card) as channel:
        return asyncio.run(sync_card(channel.relay, channel.key_server(), timeout=30))


def host_card(work: Path, system: System) -> tuple[Path, str]:
    pki_dir = work / "pki"  # the PKI start_system made
    card = work / "phone.json"
    run("firmware.virtual.cli", "personalize", "--card", str(card), "--seid", HOST_SEID,
        "--issuer-cert", str(pki_dir / "se-issuer-ca.pem"),
        "--issuer-key", str(pki_dir / "se-issuer-ca.key"),
        "--key-server-ca", str(pki_dir / "key-server-ca.pem"),
        "--key-server", system.api.url)  # fmt: skip
    se = system.api.call("POST", "/secure-elements", {"seid": HOST_SEID})
    return card, se["id"]


def measure(work: Path, rounds: int) -> list[str]:
    # Three syncs a round from one address: above the default 30 a minute.
    os.environ["ELOCK_KEYSERVER_PUSH_SYNC_PER_MINUTE"] = "10000"
    services: list[Running] = []
    try:
        system = start_system(work, services)
        api = system.api
        card, phone_se = host_card(work, system)
        racs, host, idle = [], [], []
        for n in range(rounds):
            body = {"lock_id": system.lock_id, "secure_element_id": system.se_id,
                    "label": f"Door {n}"}  # fmt: skip
            began = time.perf_counter()
            key = api.call("POST", "/keys", body)

            def state_is(state: str, key_id: str = key["id"]) -> Callable[[], bool]:
                return lambda: bool(api.call("GET", f"/keys/{key_id}")["push"]["state"] == state)

            wait(state_is("installed"))
            racs.append(time.perf_counter() - began)
            api.call("POST", f"/keys/{key['id']}/revoke", {"reason": "bench"})
            wait(state_is("removed"))

            body = {"lock_id": system.lock_id, "secure_element_id": phone_se,
                    "label": f"Phone door {n}"}  # fmt: skip
            began = time.perf_counter()
            key = api.call("POST", "/keys", body)
            result = sync_once(card)
            assert state_is("installed", key["id"])() and result.added == 1, result
            host.append(time.perf_counter() - began)
            api.call("POST", f"/keys/{key['id']}/revoke", {"reason": "bench"})
            assert sync_once(card).removed == 1

            began = time.perf_counter()
            assert sync_once(card).added == 0
            idle.append(time.perf_counter() - began)
    finally:
        for service in reversed(services):
            service.stop()
    med = statistics.median
    return [
        "| measure | median | p90 |",
        "|---|---|---|",
        f"| RACS path: `POST /keys` → `installed` (worker, card behind pcscd) | "
        f"{med(racs) * 1e3:.0f} ms | {p90(racs) * 1e3:.0f} ms |",
        f"| host path: `POST /keys` → one sync → `installed` (card in process) | "
        f"{med(host) * 1e3:.0f} ms | {p90(host) * 1e3:.0f} ms |",
        f"| host path: a sync with nothing due | {med(idle) * 1e3:.0f} ms | "
        f"{p90(idle) * 1e3:.0f} ms |",
        f"| ratio host / RACS | {med(host) / med(racs):.1f} | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="elock-bench-") as tmp:
        print("\n".join(measure(Path(tmp), args.rounds)))


if __name__ == "__main__":
    main()
