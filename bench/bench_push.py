"""Provisioning through RACS and TLS#2: latency, APDUs, throughput, as markdown.

Real parts in one process: the asyncio RACS server (TLS 1.3, mutual X.509) on
loopback, in-process eLock applets with an identity made by ``elock_common.pki``,
and ``elock_push.SecureElementPush`` (OpenSSL as TLS#2's client) on the same
event loop, so one CPU core does every end. Run from the repository root::

    .venv/bin/python bench/bench_push.py [--rounds 30]

Rows: one container per push (RACS session, both handshakes, close), the APDUs
and RACS round trips it takes, and containers per second with 10 cards behind
one RACS server pushed in parallel (one container per push, then 8 per push).

Then the same push against our RACS server in both styles (``racs.style``),
rounds interleaved so that both see the same machine: ``elock`` (fetches 61xx
unasked), ``openracs`` (as the draft author's server: only when asked) with
our client's ``MORE=61 FETCH=00C00000``, and ``openracs`` with a client that
asks nothing and follows 61xx itself (what not asking costs). The reference
for the ratios is the ``elock`` style measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elock_common import pki
from elock_common.container import KeyContainer
from elock_push import Delete, Install, Outcome
from elock_testkit.push_harness import make_card, pusher_for, start_racs
from racs.style import ServerStyle


def container(container_id: int, n: int) -> KeyContainer:
    return KeyContainer(container_id, f"Door {n}", "coaps://127.0.0.1/lock",
                        f"key-{n:06d}".encode(), b"P" * 32)  # fmt: skip


async def styles(paths: pki.PkiPaths, rounds: int) -> list[str]:
    """One container per push in each RACS style, interleaved; medians and ratios."""
    seid = "card-style"
    servers = {st: await start_racs(paths, {seid: make_card(paths, seid)}, style=st)
               for st in ServerStyle}  # fmt: skip
    variants = {
        "elock style, client asks MORE=61 FETCH=00C00000": (ServerStyle.ELOCK, True),
        "openracs style, client asks MORE=61 FETCH=00C00000": (ServerStyle.OPENRACS, True),
        "openracs style, client asks nothing (own GET RESPONSE)": (ServerStyle.OPENRACS, False),
    }
    seen: dict[str, tuple[list[float], list[int], list[int]]] = {v: ([], [], []) for v in variants}
    pushers = {}
    for name, (style, ask) in variants.items():
        pushers[name] = pusher_for(paths, servers[style].port)
        pushers[name].ask_server_to_fetch = ask
    try:
        for n in range(rounds):
            for name, pusher in pushers.items():
                began = time.perf_counter()
                report = await pusher.push(seid, [Install(container(1, n))])
                seen[name][0].append(time.perf_counter() - began)
                assert report.results[0].outcome is Outcome.INSTALLED
                seen[name][1].append(report.round_trips)
                seen[name][2].append(report.apdus)
                await pusher.push(seid, [Delete(1)])
    finally:
        for racs in servers.values():
            await racs.close()
    reference = statistics.median(next(iter(seen.values()))[0])
    rows = ["| RACS server and client | median ms | ratio to elock | RACS round trips"
            " | APDUs sent by the key server |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, (times, trips, apdus) in seen.items():
        median, trip, apdu = (statistics.median(x) for x in (times, trips, apdus))
        rows.append(f"| {name} | {median * 1e3:.1f} | {median / reference:.2f} | {trip:.0f} |"
                    f" {apdu:.0f} |")  # fmt: skip
    return rows


async def run(rounds: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = pki.init_pki(Path(tmp))
        seids = [f"card-{n:04d}" for n in range(10)]
        racs = await start_racs(paths, {s: make_card(paths, s) for s in seids})
        try:
            pusher = racs.pusher()
            one, tapped = seids[0], racs.cards[seids[0]]
            latencies, apdus, trips, card_apdus = [], [], [], []
            for n in range(rounds):
                before = len(tapped.seen)
                began = time.perf_counter()
                report = await pusher.push(one, [Install(container(1, n))])
                latencies.append(time.perf_counter() - began)
                assert report.results[0].outcome is Outcome.INSTALLED
                apdus.append(report.apdus)
                trips.append(report.round_trips)
                card_apdus.append(len(tapped.seen) - before)
                await pusher.push(one, [Delete(1)])
            rows = [
                "| measure | value |",
                "|---|---|",
                f"| one container, one push: median | {statistics.median(latencies) * 1e3:.1f} ms"
                " |",
                f"| same, p90 | {sorted(latencies)[int(0.9 * rounds)] * 1e3:.1f} ms |",
                f"| APDUs sent by the key server per push | {statistics.median(apdus):.0f} |",
                f"| APDUs the card processed (GET RESPONSE included) | "
                f"{statistics.median(card_apdus):.0f} |",
                f"| RACS round trips per push (POWERON included) | {statistics.median(trips):.0f}"
                " |",
            ]
            for per_push in (1, 8):
                pushes = 8 // per_push

                async def card_task(
                    seid: str, per_push: int = per_push, pushes: int = pushes
                ) -> None:
                    for p in range(pushes):
                        ops = [Install(container(p * per_push + i + 1, i)) for i in range(per_push)]
                        report = await pusher.push(seid, ops)
                        assert all(r.outcome is Outcome.INSTALLED for r in report.results)
                    await pusher.push(seid, [Delete(i) for i in range(1, 9)])

                began = time.perf_counter()
                await asyncio.gather(*(card_task(s) for s in seids))
                elapsed = time.perf_counter() - began
                # the clean-up pushes (one per card) are counted in the time, not the containers
                rate = f"{80 / elapsed:.0f} containers/s ({elapsed:.2f} s for 80)"
                rows.append(f"| 10 cards in parallel, {per_push} container(s) per push | {rate} |")
        finally:
            await racs.close()
        return [*rows, "", *await styles(paths, rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("\n".join(asyncio.run(run(args.rounds))))


if __name__ == "__main__":
    main()
