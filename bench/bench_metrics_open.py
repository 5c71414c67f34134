#!/usr/bin/env python3
"""Open latency with the lock's metrics on against off, in the same run.

Two lock processes from one secret's worth of setup each: one with
``[metrics] enabled = true`` (and scraped once a second while the bench runs,
as Prometheus would), one without. Each sample is one whole
``coap-client-openssl`` run that opens the door, as in ``bench_open.py``;
samples alternate between the two locks so machine noise hits both alike.
Also prints what the hooks on the open path cost in process (one granted and
one refused open counted, per call).

    .venv/bin/python bench/bench_metrics_open.py [--runs 60]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import timeit
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_open import timed  # noqa: E402
from elock_testkit.lockproc import LockProcess  # noqa: E402
from elock_testkit.ports import free_tcp_port  # noqa: E402
from lock_server import metrics  # noqa: E402
from lock_server.policy import Code, Refusal  # noqa: E402


def scrape_every_second(port: int, stop: threading.Event, count: list[int]) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            r.read()
        count[0] += 1


def hook_cost_ns() -> float:
    refusal = Refusal(Code.UNAUTHORIZED, "key revoked")
    n = 100_000
    seconds = timeit.timeit(
        lambda: (metrics.open_decided(None), metrics.open_decided(refusal)), number=n
    )
    return seconds / (2 * n) * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    if not 1 <= args.runs <= 1000:
        raise SystemExit("--runs must be 1..1000")
    client = shutil.which("coap-client-openssl")
    if not client:
        raise SystemExit("libcoap3-bin is missing: run scripts/install.sh")
    stop, scrapes = threading.Event(), [0]
    with tempfile.TemporaryDirectory() as tmp:
        off = LockProcess.create(Path(tmp) / "off", open_seconds=0.1)
        on = LockProcess.create(Path(tmp) / "on", open_seconds=0.1)
        port = free_tcp_port()
        with on.config.open("a") as f:
            f.write(f"\n[metrics]\nenabled = true\nport = {port}\n")
        off.start()
        on.start()
        scraper = threading.Thread(target=scrape_every_second, args=(port, stop, scrapes))
        try:
            cmds = {}
            for name, lock in (("off", off), ("on", on)):
                key = lock.mint()
                cmds[name] = [client, "-m", "post", "-u", key.identity, "-k", key.psk, lock.uri]
            for _ in range(3):  # warm-up
                for cmd in cmds.values():
                    timed(cmd, "opened")
            scraper.start()
            samples: dict[str, list[float]] = {"off": [], "on": []}
            for i in range(args.runs):
                order = ("off", "on") if i % 2 == 0 else ("on", "off")
                for name in order:
                    samples[name].append(timed(cmds[name], "opened"))
        finally:
            stop.set()
            if scraper.is_alive():
                scraper.join(10)
            off.stop()
            on.stop()

    def row(name: str, xs: list[float]) -> str:
        q = statistics.quantiles(xs, n=10)
        return f"| {name} | {statistics.median(xs):.1f} | {q[0]:.1f} | {q[-1]:.1f} | {len(xs)} |"

    print("| what (coap-client-openssl, whole run) | median ms | p10 ms | p90 ms | runs |")
    print("|---|---|---|---|---|")
    print(row("POST /lock, metrics off", samples["off"]))
    print(row(f"POST /lock, metrics on (scraped {scrapes[0]} times)", samples["on"]))
    ratio = statistics.median(samples["on"]) / statistics.median(samples["off"])
    print(f"\nratio on / off (medians): {ratio:.3f}")
    print(f"open-path hook in process: {hook_cost_ns():.0f} ns per counted open")
    return 0


if __name__ == "__main__":
    sys.exit(main())
