"""APDU round trip of the eLock applet: in process, and through pcscd + vpcd + pyscard.

Run from the repository root (pcscd and vsmartcard-vpcd installed)::

    .venv/bin/python bench/bench_apdu.py [--count 1000]

It personalizes a temporary card with one container, serves it with
``elock-se serve`` in a subprocess (as a person would), reuses a running pcscd
or starts one (and stops only that one), and times LIST (about 80 bytes back)
and OPEN + CLOSE (the card builds a DTLS ClientHello) over ``--count`` APDUs.
Prints a markdown table of median and p90 in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elock_testkit.pcsc import READER, pcscd_alive  # noqa: E402
from firmware.applet import Applet  # noqa: E402
from firmware.store import Store  # noqa: E402
from firmware.virtual import cardfile, host  # noqa: E402
from firmware.virtual.cli import main as elock_se  # noqa: E402

LIST = bytes.fromhex("8030000000")
CLOSE = bytes.fromhex("80380000")


def open_apdu() -> bytes:
    from elock_common import card_protocol as c
    from elock_common import tlv
    from firmware.apdu import command

    data = tlv.encode(c.TAG_CONTAINER, b"\x01") + tlv.encode(
        c.TAG_NOW, host.now_ms().to_bytes(8, "big")
    )
    return command(c.CLA_PROPRIETARY, c.INS_OPEN, 0, 0, data, le=256)


def time_it(transmit: host.Transmit, apdus: list[bytes], count: int) -> list[float]:
    """Seconds per round of *apdus*, divided by len(apdus): per-APDU times."""
    for _ in range(20):  # warm up
        for apdu in apdus:
            transmit(apdu)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        for apdu in apdus:
            response = transmit(apdu)
        samples.append((time.perf_counter() - start) / len(apdus))
        assert response[-2:] == b"\x90\x00", response.hex()
    return samples


def row(path: str, what: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    return (
        f"| {path} | {what} | {statistics.median(ordered) * 1e6:.1f} | {p90 * 1e6:.1f} "
        f"| {len(samples)} |"
    )


def start_pcscd() -> subprocess.Popen[bytes] | None:
    if pcscd_alive():
        return None
    proc = subprocess.Popen(["pcscd", "--foreground", "--error"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not pcscd_alive():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("pcscd did not start (stale /run/pcscd/pcscd.comm?)")
        time.sleep(0.05)
    return proc


def wait_for_reader(
    connect: Callable[[], tuple[host.Transmit, Callable[[], None]]],
) -> tuple[host.Transmit, Callable[[], None]]:
    deadline = time.monotonic() + 15
    while True:
        try:
            return connect()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        card = Path(tmp) / "card.json"
        elock_se(["personalize", "--card", str(card)])
        elock_se(["install", "--card", str(card), "--label", "Bench door", "--uri",
                  "coaps://127.0.0.1:5684/lock", "--identity", "bench-identity",
                  "--psk", "bench-psk-000000"])  # fmt: skip

        applet = Applet(Store(cardfile.load(card)))
        host.select(applet.process)
        rows.append(row("in process", "LIST", time_it(applet.process, [LIST], args.count)))
        rows.append(row("in process", "OPEN + CLOSE (per APDU)",
                        time_it(applet.process, [open_apdu(), CLOSE], args.count)))  # fmt: skip

        pcscd = start_pcscd()
        serve = subprocess.Popen(
            [sys.executable, "-m", "firmware.virtual.cli", "serve", "--card", str(card)],
            cwd=ROOT, stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            transmit, close = wait_for_reader(lambda: host.pcsc_transmit(READER))
            host.select(transmit)
            rows.append(row("pcscd + vpcd", "LIST", time_it(transmit, [LIST], args.count)))
            rows.append(row("pcscd + vpcd", "OPEN + CLOSE (per APDU)",
                            time_it(transmit, [open_apdu(), CLOSE], args.count)))  # fmt: skip
            close()
        finally:
            serve.terminate()
            serve.wait(10)
            if pcscd is not None:
                pcscd.terminate()
                pcscd.wait(10)
    print("| path | APDU | median µs | p90 µs | samples |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
