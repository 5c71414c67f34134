#!/usr/bin/env python3
"""Open latency: ``coap-client-openssl`` opening the real lock, against a reference.

Each sample is one whole ``coap-client-openssl`` run: process start, DTLS 1.2
PSK handshake with cookie exchange, CoAP POST /lock, answer. The reference is
the same client doing the same handshake and a GET against libcoap's own
``coap-server-openssl`` on the same machine in the same run, so the ratio shows
what the lock (tinydtls in Python, policy, fsync'd audit row, relay) adds to a
C server. Samples alternate between the two so machine noise hits both alike.

    .venv/bin/python bench/bench_open.py [--runs 60]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elock_testkit.lockproc import LockProcess, free_udp_port  # noqa: E402


def timed(args: list[str], expect: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    elapsed = time.perf_counter() - began
    if expect not in done.stdout + done.stderr:
        raise SystemExit(f"unexpected answer from {args[0]}: {done.stdout + done.stderr!r}")
    return elapsed * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    client = shutil.which("coap-client-openssl")
    server = shutil.which("coap-server-openssl")
    if not client or not server:
        raise SystemExit("libcoap3-bin is missing: run scripts/install.sh")
    with tempfile.TemporaryDirectory() as tmp:
        lock = LockProcess.create(Path(tmp) / "lock", open_seconds=0.1)
        lock.start()
        key = lock.mint()
        ref_port = free_udp_port()  # libcoap serves coaps on this port + 1
        ref = subprocess.Popen(
            [server, "-A", "127.0.0.1", "-p", str(ref_port), "-k", key.psk],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        lock_cmd = [client, "-m", "post", "-u", key.identity, "-k", key.psk, lock.uri]
        ref_cmd = [
            client,
            "-m",
            "get",
            "-u",
            key.identity,
            "-k",
            key.psk,
            f"coaps://127.0.0.1:{ref_port + 1}/",  # libcoap: coaps on port + 1
        ]
        try:
            for _ in range(3):  # warm-up
                timed(lock_cmd, "opened")
                timed(ref_cmd, "libcoap")
            lock_ms, ref_ms = [], []
            for _ in range(args.runs):
                lock_ms.append(timed(lock_cmd, "opened"))
                ref_ms.append(timed(ref_cmd, "libcoap"))
        finally:
            ref.terminate()
            lock.stop()

    def row(name: str, xs: list[float]) -> str:
        q = statistics.quantiles(xs, n=10)
        return f"| {name} | {statistics.median(xs):.1f} | {q[0]:.1f} | {q[-1]:.1f} | {len(xs)} |"

    print("| what (coap-client-openssl, whole run) | median ms | p10 ms | p90 ms | runs |")
    print("|---|---|---|---|---|")
    print(row("POST /lock on the eLock lock (opens)", lock_ms))
    print(row("GET / on libcoap coap-server-openssl (reference)", ref_ms))
    ratio = statistics.median(lock_ms) / statistics.median(ref_ms)
    print(f"\nratio lock / reference (medians): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
