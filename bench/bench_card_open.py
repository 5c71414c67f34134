#!/usr/bin/env python3
"""Open with the key in the applet: in process and through pcscd, and a real-SIM estimate.

Every Open is the whole story of the key host: SELECT, OPEN, the DATAGRAMS
exchanges carrying the applet's DTLS and CoAP to the real lock over UDP, done.
Samples: ``--runs`` opens in process (card file run here) and as many through
pcscd + vpcd + pyscard (``elock-se serve``). The reference in the same run is
libcoap's ``coap-client-openssl`` opening the same lock with the same key.

The SIM estimate counts, during one Open, the applet's SHA-256 compression
blocks (PRF/HMAC and the handshake transcript), its AES block operations
(CCM: CBC-MAC and CTR) and the APDU bytes, and prices them with the costs the
seed measured on a Gemalto SIM (shared/seeds, "Experimental Platform"): AES
2.1 ms per 16-byte block, I/O 0.1 ms per byte, and SHA-1's 0.9 ms per 64-byte
block standing in for SHA-256 (the seed has no SHA-256 figure; on such chips
SHA-256 is slower, so this is a lower bound).

    .venv/bin/python bench/bench_card_open.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import firmware.dtls.keys as dtls_keys  # noqa: E402
import firmware.dtls.records as dtls_records  # noqa: E402
from elock_testkit.cardproc import ServedCard, make_card  # noqa: E402
from elock_testkit.lockproc import LockProcess  # noqa: E402
from elock_testkit.pcsc import READER  # noqa: E402
from firmware.virtual.virtual_card import InProcessCard  # noqa: E402
from key_client.cards import AppletChannel, connect  # noqa: E402
from key_client.carrier import open_door  # noqa: E402

SIM_MS = {"sha_block": 0.9, "aes_block": 2.1, "io_byte": 0.1}


class Counters:
    def __init__(self) -> None:
        self.sha_blocks = 0
        self.aes_blocks = 0
        self.io_bytes = 0

    def install(self) -> None:
        """Wrap the applet's primitives to count what a SIM would compute."""
        hmac_orig, sha_orig = dtls_records._hmac_sha256, dtls_records.sha256

        def counted_hmac(key: bytes, data: bytes) -> bytes:
            self.sha_blocks += math.ceil((64 + len(data) + 9) / 64) + 2  # inner + outer
            return hmac_orig(key, data)

        def counted_sha(data: bytes) -> bytes:
            self.sha_blocks += math.ceil((len(data) + 9) / 64)
            return sha_orig(data)

        dtls_records._hmac_sha256 = counted_hmac
        dtls_records.sha256 = counted_sha
        for name in ("restart", "update"):
            original = getattr(dtls_keys.KeySchedule, name)

            def counted(schedule: object, message: bytes, _o: object = original) -> None:
                self.sha_blocks += len(message) / 64  # incremental: each byte hashed once
                _o(schedule, message)  # type: ignore[operator]

            setattr(dtls_keys.KeySchedule, name, counted)
        seal, open_ = dtls_records.CcmProtection.seal, dtls_records.CcmProtection.open

        def counted_seal(prot, record_type, version, epoch, seq, plaintext):  # type: ignore[no-untyped-def]
            self.aes_blocks += 3 + 2 * math.ceil(len(plaintext) / 16)
            return seal(prot, record_type, version, epoch, seq, plaintext)

        def counted_open(prot, record):  # type: ignore[no-untyped-def]
            self.aes_blocks += 3 + 2 * math.ceil(max(len(record.fragment) - 16, 0) / 16)
            return open_(prot, record)

        dtls_records.CcmProtection.seal = counted_seal  # type: ignore[method-assign]
        dtls_records.CcmProtection.open = counted_open  # type: ignore[method-assign]


def stats(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=10) if len(xs) > 1 else [xs[0], xs[0]]
    return f"{statistics.median(xs):.1f} | {q[0]:.1f} | {q[-1]:.1f} | {len(xs)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lock = LockProcess.create(Path(tmp) / "lock", open_seconds=0.1)
        lock.start()
        try:
            key = lock.mint()
            card = make_card(Path(tmp), [("Door", lock.uri, key)])

            def one(channel: AppletChannel) -> tuple[float, int]:
                info = channel.keys()[0]
                outcome = asyncio.run(open_door(channel, info, timeout=10))
                return outcome.elapsed * 1000, outcome.exchanges

            in_process, exchanges = [], set()
            for _ in range(args.runs):
                with InProcessCard(card) as sim:
                    ms, n = one(AppletChannel(sim.transmit))
                in_process.append(ms)
                exchanges.add(n)

            counters = Counters()
            counters.install()
            with InProcessCard(card) as sim:

                def transmit(apdu: bytes) -> bytes:
                    response = sim.transmit(apdu)
                    counters.io_bytes += len(apdu) + len(response)
                    return response

                channel = AppletChannel(transmit)
                counters.io_bytes = counters.sha_blocks = counters.aes_blocks = 0
                one(channel)

            served = ServedCard(card)
            through_pcscd = []
            try:
                for _ in range(args.runs):
                    channel = connect(reader=READER)
                    ms, n = one(channel)
                    channel.abort()
                    through_pcscd.append(ms)
                    exchanges.add(n)
            finally:
                served.stop()

            libcoap = []
            for _ in range(args.runs):
                began = time.perf_counter()
                out = subprocess.run(
                    [
                        "coap-client-openssl",
                        "-m",
                        "post",
                        "-u",
                        key.identity,
                        "-k",
                        key.psk,
                        lock.uri,
                    ],
                    capture_output=True,
                    text=True,
                )
                libcoap.append((time.perf_counter() - began) * 1000)
                assert "opened" in out.stdout
        finally:
            lock.stop()

    sha, aes, io = counters.sha_blocks, counters.aes_blocks, counters.io_bytes
    sim_ms = sha * SIM_MS["sha_block"] + aes * SIM_MS["aes_block"] + io * SIM_MS["io_byte"]
    print("| Open | median ms | p10 ms | p90 ms | runs |")
    print("|---|---|---|---|---|")
    print(f"| applet in process (key host library, UDP to the real lock) | {stats(in_process)} |")
    print(f"| applet through pcscd + vpcd + pyscard | {stats(through_pcscd)} |")
    print(f"| reference: coap-client-openssl, whole process run | {stats(libcoap)} |")
    print(f"\nAPDU exchanges per Open (SELECT and LIST not counted): {sorted(exchanges)}")
    print(
        f"ratio pcscd / in process (medians): "
        f"{statistics.median(through_pcscd) / statistics.median(in_process):.2f}"
    )
    print("\n| real-SIM estimate for one Open | count | ms each | ms |")
    print("|---|---|---|---|")
    rows = [
        ("SHA-256 blocks (priced as SHA-1)", sha, SIM_MS["sha_block"]),
        ("AES-128 block operations (CCM)", aes, SIM_MS["aes_block"]),
        ("APDU bytes (commands + responses)", io, SIM_MS["io_byte"]),
    ]
    for name, count, cost in rows:
        print(f"| {name} | {count:.0f} | {cost} | {count * cost:.0f} |")
    print(f"| **total** | | | **{sim_ms:.0f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
