"""APDU round trips through RACS: per second and median latency, as a markdown table.

In-process test cards behind the real asyncio server, TLS 1.3 over loopback,
the client library on the same event loop (so the numbers are one CPU core
doing both ends). Run from the repository root::

    .venv/bin/python bench/bench_racs.py [--seconds 3]

Scenarios: one APDU per request block (a full RACS round trip each), a
script of 10 APDUs per block, 61xx chaining (a 1 KiB answer in 4 GET
RESPONSEs), and 50 concurrent sessions each on its own card.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elock_testkit.racs_applets import TestApplet
from elock_testkit.racs_pki import Pki, make_pki
from racs.access import AccessPolicy
from racs.backends import InProcessCard
from racs.client import RacsClient, client_ssl_context
from racs.registry import Registry, Slot
from racs.server import RacsServer, server_ssl_context
from racs.service import RacsService

ECHO = bytes.fromhex("000100000401020304")
LONG = bytes.fromhex("00030400")  # 1024 bytes back via 61xx / GET RESPONSE


async def measure(
    ops: list[Callable[[], Awaitable[int]]], seconds: float
) -> tuple[float, float, float]:
    """(APDUs per second, median ms per call, p99 ms per call), one loop per op."""
    latencies: list[float] = []
    apdus = 0
    end = time.perf_counter() + seconds

    async def loop(op: Callable[[], Awaitable[int]]) -> None:
        nonlocal apdus
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            n = await op()  # not "apdus += await op()": that reads apdus before awaiting
            apdus += n
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(loop(op) for op in ops))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return apdus / elapsed, statistics.median(latencies) * 1e3, p99 * 1e3


async def main(seconds: float) -> None:
    logging.disable(logging.INFO)
    pki: Pki = make_pki(Path(tempfile.mkdtemp(prefix="racs-bench-")))
    seids = [f"card{i:03d}" for i in range(50)]
    registry = Registry(Slot(s, InProcessCard(TestApplet(), name=s)) for s in seids)
    policy = AccessPolicy(users={"alice": frozenset({"*"})}, se_default_access=True)
    server_ctx = server_ssl_context(pki.server.cert, pki.server.key, pki.ca)
    server = RacsServer(RacsService(registry, policy), server_ctx, port=0)
    await server.start()
    alice = pki.users["alice"]
    ctx = client_ssl_context(alice.cert, alice.key, pki.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3

    clients = [await RacsClient.connect("127.0.0.1", server.port, ctx) for _ in seids]
    for client, seid in zip(clients, seids, strict=True):
        await client.power_on(seid)
    c0 = clients[0]

    async def one() -> int:
        await c0.apdu("card000", ECHO)
        return 1

    async def script10() -> int:
        await c0.script("card000", [ECHO] * 10)
        return 10

    async def chained() -> int:
        await c0.apdu("card000", LONG)
        return 1

    def on_card(client: RacsClient, seid: str) -> Callable[[], Awaitable[int]]:
        async def op() -> int:
            await client.apdu(seid, ECHO)
            return 1

        return op

    concurrent = [on_card(c, s) for c, s in zip(clients, seids, strict=True)]
    rows = [
        ("1 session, 1 APDU per block", await measure([one], seconds)),
        ("1 session, 10 APDUs per block", await measure([script10], seconds)),
        ("1 session, 1 KiB answer via 61xx", await measure([chained], seconds)),
        ("50 sessions, 1 APDU per block each", await measure(concurrent, seconds)),
    ]
    for client in clients:
        await client.close()
    await server.close()
    print(f"RACS over TLS 1.3 on loopback, in-process cards, Python {sys.version.split()[0]}\n")
    print("| scenario | APDUs/s | median ms per block | p99 ms per block |")
    print("|---|---:|---:|---:|")
    for name, (rate, median, p99) in rows:
        print(f"| {name} | {rate:,.0f} | {median:.3f} | {p99:.3f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario")
    asyncio.run(main(parser.parse_args().seconds))
