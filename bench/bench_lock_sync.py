#!/usr/bin/env python3
"""Locks dial out, at scale: N simulated locks against two key-server processes on PostgreSQL.

A throwaway PostgreSQL cluster; --locks locks enrolled through the service
layer; two ``elock-keyserver serve`` processes (the real command, uvicorn, one
process each) on one database; --clients client processes, each holding its
share of light locks (the lock's real ``LockSyncSession`` over the lock's
``websockets`` client, without store, relay or CoAP: ``tests/key_provisioner/
synclock.py``), every other lock on the other process. Then:

* memory per connected lock: the two server processes' RSS with every lock
  connected and in sync, minus their RSS before the first lock dialled, / N;
* revoke-to-lock: --samples sequential ``POST /keys/{id}/revoke`` through process
  A, each for a random connected lock (half of them held by process B, woken
  through LISTEN/NOTIFY); from the API's answer to the list's arrival in the
  light lock, p50 and p99, split by same and other process;
* back in sync after a restart: both processes stopped (SIGTERM) and started
  again; from the moment both answer again until every lock has reconnected
  (backoff 0.5 s doubling to 5 s, jitter x0.5 to x1.5, as the lock) and holds
  the server's list.

Bounded in count and time: every wait has a deadline; loopback only. 10,000 locks
hold as many sockets on each side (the bench raises its soft file limit) and about 1 GB
in the two servers alone. Prints one JSON object.

    .venv/bin/python bench/bench_lock_sync.py [--locks 10000] [--clients 4] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elock_common import LockSecret  # noqa: E402
from elock_testkit.synclock import LightLock  # noqa: E402

RECONNECT_BASE, RECONNECT_MAX = 0.5, 5.0


# -- client processes ------------------------------------------------------------------


def client_main(args: argparse.Namespace) -> None:
    """Hold this share of locks connected; report every sync and list on stdout."""
    _raise_fd_limit()
    shares = json.loads(Path(args.share).read_text())
    asyncio.run(_client(shares, args.urls.split(",")))


async def _client(shares: list[list[Any]], urls: list[str]) -> None:
    out = sys.stdout
    sem = asyncio.Semaphore(32)  # dials in flight per process: about the servers' handshake room

    def report(**fields: Any) -> None:
        out.write(json.dumps(fields) + "\n")
        out.flush()

    async def keep(index: int, lock_id: str, secret: str) -> None:
        lock = LightLock(lock_id, LockSecret.from_text(secret), ping_seconds=20.0)
        lock.on_list = lambda version, at: report(
            e="list", lock=lock_id, v=version, t=at - time.monotonic() + time.time()
        )
        url = urls[index % len(urls)]
        failures = 0
        while True:
            try:
                async with sem:
                    await lock.connect(url, timeout=15)
                    await asyncio.wait_for(lock.synced.wait(), 30)
                failures = 0
                report(e="synced", lock=lock_id, held=lock.held, t=time.time())
                await lock.ended.wait()
            except Exception:
                pass
            await lock.close()
            report(e="down", lock=lock_id, t=time.time())
            failures += 1
            delay = min(RECONNECT_MAX, RECONNECT_BASE * 2 ** min(failures, 10))
            await asyncio.sleep(delay * (0.5 + random.random()))

    await asyncio.gather(*(keep(i, lock_id, s) for i, lock_id, s in shares))


# -- the driver ------------------------------------------------------------------------------


class Clients:
    """The client processes' reports, read in threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.synced: dict[str, float] = {}  # lock -> last sync time
        self.up: set[str] = set()
        self.arrivals: dict[tuple[str, int], float] = {}
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, shares: list[list[list[Any]]], urls: list[str], directory: Path) -> None:
        for n, share in enumerate(shares):
            path = directory / f"share-{n}.json"
            path.write_text(json.dumps(share))
            proc = subprocess.Popen(
                [sys.executable, __file__, "--client", "--share", str(path), "--urls",
                 ",".join(urls)],
                stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
            )  # fmt: skip
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            with self.lock:
                if event["e"] == "synced":
                    self.synced[event["lock"]] = event["t"]
                    self.up.add(event["lock"])
                elif event["e"] == "down":
                    self.up.discard(event["lock"])
                elif event["e"] == "list":
                    self.arrivals[(event["lock"], event["v"])] = event["t"]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.wait(10)


def _wait(condition: Any, timeout: float, what: str, progress: Any = None) -> float:
    start = last = time.monotonic()
    while not condition():
        now = time.monotonic()
        if now - start > timeout:
            got = f" ({progress()})" if progress else ""
            raise SystemExit(f"bench: {what} not within {timeout} s{got}")
        if progress is not None and now - last > 30:
            print(f"bench: {what}: {progress()} after {now - start:.0f} s", file=sys.stderr)
            last = now
        time.sleep(0.05)
    return time.monotonic() - start


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--locks", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--share", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    if not 1 <= args.locks <= 20_000 or not 1 <= args.samples <= 2000:
        parser.error("--locks 1..20000, --samples 1..2000 (a bench on a shared machine)")
    _raise_fd_limit()
    from lock_sync_stack import Stack  # the servers and the database (bench/)

    with tempfile.TemporaryDirectory(prefix="elock-bench-sync-") as tmp:
        stack = Stack.start(Path(tmp), args.locks)
        clients = Clients()
        try:
            print(json.dumps(_run(stack, clients, args, Path(tmp)), indent=1))
        finally:
            clients.stop()
            stack.stop()


def _run(stack: Any, clients: Clients, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    n = args.locks
    before = [_rss(pid) for pid in stack.pids()]
    shares: list[list[list[Any]]] = [[] for _ in range(args.clients)]
    for i, (lock_id, secret) in enumerate(stack.locks):
        shares[i % args.clients].append([i, lock_id, secret])
    started = time.monotonic()
    clients.start(shares, stack.sync_urls(), tmp)
    connect_s = _wait(lambda: len(clients.up) >= n, 1200, "every lock connected",
                      lambda: f"{len(clients.up)} connected")  # fmt: skip
    _wait(lambda: stack.connected() >= n, 60, "every lock shown connected")
    time.sleep(2)  # settle: let garbage from the connect storm be collected
    after = [_rss(pid) for pid in stack.pids()]
    per_lock = (sum(after) - sum(before)) / n

    # revoke-to-lock: sequential revokes through process A
    sample = random.Random(7).sample(range(n), min(args.samples, n))
    same, other = [], []
    for i in sample:
        lock_id = stack.locks[i][0]
        version, answered = stack.revoke_new_key(lock_id)
        wanted = (lock_id, version)
        _wait(lambda w=wanted: w in clients.arrivals, 10, f"list {version} at {lock_id}")  # type: ignore[misc]
        delay = clients.arrivals[wanted] - answered
        (same if i % 2 == 0 else other).append(delay)
    both = sorted(same + other)

    # both processes restarted; time until every lock is back and holds the server's list
    with clients.lock:
        clients.synced.clear()
    restart_at = time.time()
    stack.restart()
    ready = time.time()
    back_s = _wait(lambda: len(clients.synced) >= n and len(clients.up) >= n, 1200, "all back",
                   lambda: f"{len(clients.synced)} back in sync")  # fmt: skip
    last = max(clients.synced.values())
    return {
        "locks": n,
        "client_processes": args.clients,
        "server_processes": 2,
        "connect_all_s": round(connect_s, 1),
        "connect_rate_per_s": round(n / max(connect_s, 1e-9)),
        "rss_before_mb": [round(b / 2**20, 1) for b in before],
        "rss_connected_mb": [round(a / 2**20, 1) for a in after],
        "memory_per_lock_kb": round(per_lock / 1024, 1),
        "revoke_samples": len(both),
        "revoke_to_lock_ms_p50": round(1000 * statistics.median(both), 1),
        "revoke_to_lock_ms_p99": round(1000 * both[max(0, int(0.99 * len(both)) - 1)], 1),
        "revoke_to_lock_ms_max": round(1000 * both[-1], 1),
        "same_process_ms_p50": round(1000 * statistics.median(same), 1) if same else None,
        "other_process_ms_p50": round(1000 * statistics.median(other), 1) if other else None,
        "restart_stop_and_start_s": round(ready - restart_at, 1),
        "back_in_sync_after_restart_s": round(last - ready, 1),
        "back_in_sync_wait_s": round(back_s, 1),
        "total_s": round(time.monotonic() - started, 1),
    }


if __name__ == "__main__":
    main()
