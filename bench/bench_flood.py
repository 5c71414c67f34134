#!/usr/bin/env python3
"""The lock under a flood of unauthenticated handshakes: disk growth and open latency.

A flood process runs junk handshakes against ``elock-lock serve`` on loopback
(ClientHello, cookie, ClientKeyExchange with a junk PSK identity and
ChangeCipherSpec: each reaches the lock's PSK lookup and its refusal path),
each from a fresh UDP port, at ``--rate`` per second for ``--seconds``. Meanwhile
legitimate opens are timed, each one whole ``coap-client-openssl`` run
(process start, handshake, POST /lock); the reference is the same opens against
the same lock, unloaded, in the same run just before. Reported: the lock's
database growth (bytes of lock.sqlite3 and its WAL, audit rows), its log growth,
the flood rate actually reached, and both medians with their ratio.

    .venv/bin/python bench/bench_flood.py [--rate 1000] [--seconds 60] [--opens 30]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elock_testkit.handshake_flood import flood  # noqa: E402
from elock_testkit.lockproc import Key, LockProcess  # noqa: E402

MAX_RATE, MAX_SECONDS = 2000, 120  # this bench never floods harder or longer


def timed_open(client: str, key: Key, uri: str) -> float | None:
    """Milliseconds for one whole open; None if it did not open within 10 s."""
    began = time.perf_counter()
    done = subprocess.run(
        [client, "-m", "post", "-u", key.identity, "-k", key.psk, "-B", "10", uri],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    elapsed = (time.perf_counter() - began) * 1000
    return elapsed if "opened" in done.stdout + done.stderr else None


def _flood(port: int, rate: float, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    result = flood(("127.0.0.1", port), rate=rate, seconds=seconds, max_inflight=512)
    out.put(vars(result) | {"rate": result.rate})


def db_state(lock: LockProcess) -> tuple[int, int, int]:
    """(bytes of the database in use, file bytes with the WAL, audit rows).

    The WAL is checkpointed first, so the bytes in use are the pages the
    database holds, whatever the WAL happened to hold at that moment.
    """
    import sqlite3

    db = sqlite3.connect(lock.data_dir / "lock.sqlite3")
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        rows = db.execute("SELECT count(*) FROM audit").fetchone()[0]
    finally:
        db.close()
    files = [lock.data_dir / f"lock.sqlite3{suffix}" for suffix in ("", "-wal")]
    on_disk = sum(f.stat().st_size for f in files if f.exists())
    return (pages - free) * size, on_disk, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--opens", type=int, default=30, help="timed opens, unloaded and loaded")
    args = parser.parse_args()
    if not (0 < args.rate <= MAX_RATE and 0 < args.seconds <= MAX_SECONDS):
        raise SystemExit(f"--rate up to {MAX_RATE}, --seconds up to {MAX_SECONDS}")
    client = shutil.which("coap-client-openssl")
    if not client:
        raise SystemExit("libcoap3-bin is missing: run scripts/install.sh")
    with tempfile.TemporaryDirectory() as tmp:
        lock = LockProcess.create(Path(tmp) / "lock", open_seconds=0.1)
        lock.start()
        try:
            key = lock.mint()
            timed_open(client, key, lock.uri)  # warm up
            unloaded = [timed_open(client, key, lock.uri) for _ in range(args.opens)]
            if None in unloaded:
                raise SystemExit("an open failed without any flood: is the lock healthy?")
            used_before, disk_before, rows_before = db_state(lock)
            log_before = (lock.directory / "lock.log").stat().st_size

            results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
            flooder = multiprocessing.Process(
                target=_flood, args=(lock.port, args.rate, args.seconds, results)
            )
            flooder.start()
            time.sleep(min(2.0, args.seconds / 10))  # let the flood reach its rate
            loaded: list[float | None] = []
            pause = max(0.0, (args.seconds * 0.8) / args.opens - 0.05)
            while flooder.is_alive() and len(loaded) < args.opens:
                loaded.append(timed_open(client, key, lock.uri))
                time.sleep(pause)  # spread the opens over the flood
            flood_result = results.get(timeout=args.seconds + 30)
            flooder.join(30)
        finally:
            lock.stop()  # writes the last summary rows
        used_after, disk_after, rows_after = db_state(lock)
        log_after = (lock.directory / "lock.log").stat().st_size
    disk = (disk_before, disk_after)
    ok_unloaded = [ms for ms in unloaded if ms is not None]
    ok_loaded = [ms for ms in loaded if ms is not None]
    report: dict[str, object] = {
        "flood": {**flood_result, "asked_rate": args.rate, "seconds": args.seconds},
        "db_bytes_in_use_growth": used_after - used_before,
        "db_files_bytes": [disk_before, disk_after],
        "audit_rows_added": rows_after - rows_before,
        "log_growth_bytes": log_after - log_before,
        "open_ms_unloaded_median": round(statistics.median(ok_unloaded), 1),
        "open_ms_loaded_median": round(statistics.median(ok_loaded), 1) if ok_loaded else None,
        "opens_timed_unloaded": len(unloaded),
        "opens_timed_loaded": len(loaded),
        "opens_failed_loaded": len(loaded) - len(ok_loaded),
    }
    if ok_loaded:
        report["loaded_over_unloaded"] = round(
            statistics.median(ok_loaded) / statistics.median(ok_unloaded), 2
        )
    print(json.dumps(report, indent=2), file=sys.stderr)
    f = report["flood"]
    assert isinstance(f, dict)
    reached = f["refused_identity_sent"]
    print(
        f"Flood asked {args.rate:g}/s for {args.seconds:g} s: {f['started']} handshakes started,"
        f" {reached} reached the refusal path ({reached / args.seconds:.0f}/s),"
        f" {f['timed_out']} timed out.\n"
    )
    print("| measure | value |\n|---|---:|")
    rows = [
        ("audit rows added", report["audit_rows_added"]),
        ("database bytes in use, growth", report["db_bytes_in_use_growth"]),
        ("lock.sqlite3 + WAL bytes, before → after", " → ".join(map(str, disk))),
        ("lock log bytes, growth", report["log_growth_bytes"]),
        (f"open median ms, unloaded ({len(unloaded)} opens)", report["open_ms_unloaded_median"]),
        (
            f"open median ms, under flood ({len(loaded)} opens, "
            f"{report['opens_failed_loaded']} failed)",
            report["open_ms_loaded_median"],
        ),
        ("ratio loaded / unloaded (medians)", report.get("loaded_over_unloaded")),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
