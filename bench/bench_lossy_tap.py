#!/usr/bin/env python3
"""A tap through a lossy link: how fast, how often it opens, and whether the answer is true.

One tap = the key host's whole Open (``open_door``: OPEN, the DATAGRAMS and
TIMER exchanges, the applet's DTLS and CoAP) against the real lock, through
``elock_testkit/lossy_relay.py`` dropping a share of the datagrams each way (a seeded
RNG, so a run can be replayed; like a NAT, the relay gives each tap its own
upstream port). For each loss rate: ``--taps`` taps with the card in process,
as many with the card behind pcscd + vpcd + pyscard (``elock-se serve``), and,
in the same run through the same kind of relay, ``--reference-taps`` runs of
libcoap's ``coap-client-openssl`` with the same key (whole process runs; fewer,
because each takes seconds).

Per tap the truth comes from the lock, not the client: the relay's ``on``
events and the audit's granted opens during the tap. A tap *opened* if the
relay moved; *opened twice* if it moved more than once; its answer is *wrong*
if it said unreachable or refused while the door opened, or opened while it
did not ("unknown" is never wrong: it says the door may be open).

The card's work per tap is priced as ``bench_card_open.py`` prices an Open
(the seed's Gemalto SIM costs per SHA block, AES block and APDU byte), over
the in-process taps, with the datagrams the card sent.

    .venv/bin/python bench/bench_lossy_tap.py [--taps 60] [--reference-taps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_card_open import SIM_MS, Counters  # noqa: E402

from elock_testkit.cardproc import ServedCard, make_card  # noqa: E402
from elock_testkit.lockproc import Key, LockProcess  # noqa: E402
from elock_testkit.lossy_relay import LossyRelay  # noqa: E402
from elock_testkit.pcsc import READER  # noqa: E402
from firmware.virtual.virtual_card import InProcessCard  # noqa: E402
from key_client.cards import AppletChannel, connect  # noqa: E402
from key_client.carrier import open_door  # noqa: E402
from key_client.errors import (  # noqa: E402
    KeyHostError,
    OutcomeUnknownError,
    RefusedError,
    UnreachableError,
)

DEADLINE = 10.0  # seconds a client may take for one tap
LOSS_RATES = (0.1, 0.2, 0.3)


@dataclass
class Tap:
    answer: str  # opened, refused, unreachable, unknown
    seconds: float
    ons: int
    card_ms: float | None = None
    card_sent: int | None = None

    @property
    def wrong(self) -> bool:
        if self.answer == "opened":
            return self.ons == 0
        return self.answer in ("refused", "unreachable") and self.ons > 0


@dataclass
class Row:
    name: str
    loss: float
    taps: list[Tap] = field(default_factory=list)

    def line(self) -> str:
        secs = sorted(t.seconds for t in self.taps)
        opened = sum(t.answer == "opened" for t in self.taps)
        unknown = sum(t.answer == "unknown" for t in self.taps)
        p90 = _p90(secs)
        return (
            f"| {self.name} | {self.loss:.0%} | {len(self.taps)} | "
            f"{opened / len(self.taps):.0%} | {unknown} | {statistics.median(secs):.2f} | "
            f"{p90:.2f} | {sum(t.ons > 1 for t in self.taps)} | {sum(t.wrong for t in self.taps)} |"
        )


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def answer_of(call: Callable[[], object]) -> str:
    try:
        call()
    except RefusedError:
        return "refused"
    except OutcomeUnknownError:
        return "unknown"
    except UnreachableError:
        return "unreachable"
    except KeyHostError as exc:
        return f"card: {exc}"
    return "opened"


class Bench:
    def __init__(self, lock: LockProcess, key: Key, directory: Path) -> None:
        self.lock, self.key, self.directory = lock, key, directory
        self.verbose = False
        self.counters = Counters()
        self.counters.install()

    def _ons(self) -> int:
        return self.lock.relay_events().count("on")

    def _settle(self) -> None:
        """The door relocked (open time 0.1 s) before the next tap starts."""
        deadline = time.monotonic() + 5
        while self.lock.relay_on() and time.monotonic() < deadline:
            time.sleep(0.02)

    def run(self, name: str, loss: float, taps: int, seed: int) -> Row:
        row = Row(name, loss)
        with LossyRelay(("127.0.0.1", self.lock.port), loss=loss, seed=seed) as relay:
            uri = f"coaps://127.0.0.1:{relay.port}/lock"
            tap = {"card in process": self._in_process, "card behind pcscd": self._pcscd}.get(
                name, self._libcoap
            )
            tap(row, uri, taps)
        return row

    def _measure(self, row: Row, call: Callable[[], object]) -> Tap:
        self._settle()
        before = self._ons()
        began = time.perf_counter()
        answer = answer_of(call)
        tap = Tap(answer, time.perf_counter() - began, 0)
        self._settle()
        tap.ons = self._ons() - before
        row.taps.append(tap)
        if self.verbose:
            print(f"  {row.name} {row.loss:.0%}: {tap}", file=sys.stderr)
        return tap

    def _in_process(self, row: Row, uri: str, taps: int) -> None:
        directory = self.directory / f"inproc-{row.loss}"
        directory.mkdir()
        card = make_card(directory, [("Door", uri, self.key)])
        counters = self.counters
        with InProcessCard(card) as sim:

            def transmit(apdu: bytes) -> bytes:
                response = sim.transmit(apdu)
                counters.io_bytes += len(apdu) + len(response)
                return response

            channel = AppletChannel(transmit)
            info = channel.keys()[0]
            for _ in range(taps):
                sent = {"n": 0}

                def one(sent: dict[str, int] = sent) -> None:
                    outcome = asyncio.run(open_door(channel, info, timeout=DEADLINE))
                    sent["n"] = outcome.sent

                counters.io_bytes = counters.sha_blocks = counters.aes_blocks = 0
                tap = self._measure(row, one)
                tap.card_ms = (
                    counters.sha_blocks * SIM_MS["sha_block"]
                    + counters.aes_blocks * SIM_MS["aes_block"]
                    + counters.io_bytes * SIM_MS["io_byte"]
                )
                tap.card_sent = sent["n"] or None

    def _pcscd(self, row: Row, uri: str, taps: int) -> None:
        directory = self.directory / f"pcscd-{row.loss}"
        directory.mkdir()
        served = ServedCard(make_card(directory, [("Door", uri, self.key)]))
        try:
            for _ in range(taps):

                def one() -> None:
                    channel = connect(reader=READER)
                    try:
                        info = channel.keys()[0]
                        asyncio.run(open_door(channel, info, timeout=DEADLINE))
                    finally:
                        channel.abort()  # CLOSE, and let go of the reader

                self._measure(row, one)
        finally:
            served.stop()

    def _libcoap(self, row: Row, uri: str, taps: int) -> None:
        args = ["coap-client-openssl", "-m", "post", "-B", str(int(DEADLINE))]
        args += ["-u", self.key.identity, "-k", self.key.psk, uri]

        def one() -> None:
            out = subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE + 10)
            if "opened" not in out.stdout:
                raise UnreachableError(out.stdout + out.stderr)  # libcoap says no more than this

        for _ in range(taps):
            self._measure(row, one)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--taps", type=int, default=60)
    parser.add_argument("--reference-taps", type=int, default=10)
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per tap on stderr")
    args = parser.parse_args()
    began = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        lock = LockProcess.create(Path(tmp) / "lock", open_seconds=0.1)
        lock.start()
        try:
            bench = Bench(lock, lock.mint(), Path(tmp))
            bench.verbose = args.verbose
            for n, loss in enumerate(LOSS_RATES):
                rows.append(bench.run("card in process", loss, args.taps, seed=100 + n))
                rows.append(bench.run("card behind pcscd", loss, args.taps, seed=200 + n))
                rows.append(bench.run("coap-client-openssl", loss, args.reference_taps, 300 + n))
            baseline = bench.run("card in process", 0.0, 5, seed=0)
        finally:
            lock.stop()
    print("| client | loss each way | taps | opened | unknown | median s | p90 s "
          "| opened twice | wrong answers |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row.taps:
            print(row.line())
    print("\n| modeled card time per tap (in process) | loss | mean ms | p90 ms "
          "| datagrams sent, mean | max |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for row in [baseline, *(r for r in rows if r.name == "card in process")]:
        ms = [t.card_ms for t in row.taps if t.card_ms is not None]
        sent = [t.card_sent for t in row.taps if t.card_sent is not None]
        p90 = _p90(ms)
        print(
            f"| real-SIM estimate | {row.loss:.0%} | {statistics.mean(ms):.0f} | {p90:.0f} | "
            f"{statistics.mean(sent) if sent else 0:.1f} | {max(sent) if sent else 0} |"
        )
    priced = [t for r in rows if r.name == "card in process" for t in r.taps if t.card_sent]
    if len({t.card_sent for t in priced}) > 1:
        fit = statistics.linear_regression(
            [float(t.card_sent or 0) for t in priced], [t.card_ms or 0.0 for t in priced]
        )
        print(
            f"\nper datagram the card sends (least squares over {len(priced)} opened taps): "
            f"{fit.slope:.0f} ms; at 5 datagrams (no loss) {fit.intercept + 5 * fit.slope:.0f} ms"
        )
    others = sorted({t.answer for r in rows for t in r.taps} - {"opened", "unknown"})
    print(f"\nother answers seen: {others or 'none'}; deadline {DEADLINE:g} s per tap")
    print(f"bench took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
