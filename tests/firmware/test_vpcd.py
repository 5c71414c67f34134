"""The virtual card through the real PC/SC stack: pcscd + vpcd driver + pyscard and tools.

``elock-se serve`` runs as a subprocess, as a person would run it; pyscard,
``pcsc_scan`` and ``scriptor`` (peers we did not write) find it in "Virtual PCD
00 00" and talk to it. Round-trip times are printed, not asserted: measuring
belongs to bench/bench_apdu.py.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from elock_common import card_protocol as c
from elock_common.container import parse_list
from elock_demo.pcscd import SOCKET
from elock_testkit.pcsc import READER, CardConnection, Pcscd, wait_for_card
from firmware.virtual import cardfile, host
from tests.conftest import require_tool
from tests.firmware.helpers import PSKS

ELOCK_SE = [
    sys.executable,
    "-c",
    "import sys; from firmware.virtual.cli import main; sys.exit(main())",
]
ROOT = Path(__file__).resolve().parents[2]


def elock_se(*args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None) -> str:
    env = {**os.environ, **extra_env} if extra_env else None
    done = subprocess.run(
        [*ELOCK_SE, *args], capture_output=True, text=True, input=stdin, timeout=60, cwd=ROOT,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Served:
    card: Path
    tk_file: Path
    pcscd: Pcscd
    proc: subprocess.Popen[bytes]
    log: Path

    def restart_serve(self) -> None:
        self.stop_serve()
        self.proc = _serve(self.card, self.log)

    def stop_serve(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _serve(card: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([*ELOCK_SE, "serve", "--card", str(card)], stdout=out, stderr=out,
                                cwd=ROOT)  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import smartcard  # type: ignore[import-untyped]  # noqa: F401  (required: fail if missing)

    directory = tmp_path_factory.mktemp("vcard")
    card, tk_file, log = directory / "card.json", directory / "tk.hex", directory / "serve.log"
    elock_se("personalize", "--card", str(card), "--pin-env", "CARD_PIN", "--transport-key-file",
             str(tk_file), extra_env={"CARD_PIN": "2468"})  # fmt: skip
    for n, psk in enumerate(PSKS[:2]):
        elock_se("install", "--card", str(card), "--label", f"Door {n}", "--uri",
                 f"coaps://127.0.0.1:{5684 + n}/lock", "--identity", f"ID-{n}",
                 "--psk-stdin", stdin=psk.decode() + "\n")  # fmt: skip
    pcscd = Pcscd.start()
    proc = _serve(card, log)
    served = Served(card, tk_file, pcscd, proc, log)
    try:
        wait_for_card()
        yield served
    finally:
        served.stop_serve()
        served.pcscd.stop()  # the restart test may have replaced the one started here


@pytest.mark.peer
def test_pyscard_select_list_and_round_trip(served: Served) -> None:
    with CardConnection() as connection:
        transmit = connection.transmit
        assert connection.atr() == c.ATR
        host.select(transmit)
        raw = host.transceive(transmit, bytes.fromhex("8030000000"))
        listed = parse_list(raw)
        assert [k.label for k in listed] == ["Door 0", "Door 1"]
        assert all(psk not in raw for psk in PSKS)
        times = []
        for _ in range(200):
            start = time.perf_counter()
            transmit(bytes.fromhex("8030000000"))
            times.append(time.perf_counter() - start)
        print(f"\nLIST round trip through pcscd: median {statistics.median(times) * 1e3:.3f} ms")


@pytest.mark.peer
def test_pcsc_scan_sees_the_card(served: Served) -> None:
    exe = require_tool("pcsc_scan")
    done = subprocess.run([exe, "-c", "-t", "1"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    out = done.stdout
    assert READER in out and "Card inserted" in out, out
    assert " ".join(f"{b:02X}" for b in c.ATR) in out


@pytest.mark.peer
def test_scriptor_talks_to_the_card(served: Served, tmp_path: Path) -> None:
    exe = require_tool("scriptor")
    script = tmp_path / "script.txt"
    select = "00 A4 04 00 0B " + " ".join(f"{b:02X}" for b in c.AID)
    script.write_text(f"{select}\n80 30 00 00 00\n80 50 00 00\n")
    done = subprocess.run([exe, "-r", READER, str(script)], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    replies = [line for line in done.stdout.splitlines() if line.startswith("<")]
    assert replies[0].startswith("< 90 00"), done.stdout
    assert "44 6F 6F 72 20 30" in done.stdout  # "Door 0" in the LIST answer
    assert replies[-1].startswith("< 6D 00"), done.stdout


@pytest.mark.peer
def test_install_and_delete_through_pcsc(served: Served) -> None:
    reader = ["--reader", READER, "--transport-key-file", str(served.tk_file)]
    out = elock_se("install", "--card", str(served.card), *reader, "--label", "Via PC/SC",
                   "--uri", "coaps://127.0.0.1:5700/lock", "--identity", "ID-pcsc",
                   "--psk-stdin", stdin="PSK~viaPCSC~77\n")  # fmt: skip
    cid = int(out.split()[-1])
    listing = elock_se("list", "--card", str(served.card), "--reader", READER)
    assert "Via PC/SC" in listing and "PSK~" not in listing
    assert f"c.{cid}" in cardfile.load(served.card).cells  # saved before the card answered
    elock_se("delete", "--card", str(served.card), *reader, "--id", str(cid))
    assert "Via PC/SC" not in elock_se("list", "--card", str(served.card), "--reader", READER)


@pytest.mark.peer
def test_card_file_is_locked_while_served(served: Served) -> None:
    done = subprocess.run([*ELOCK_SE, "list", "--card", str(served.card)], capture_output=True,
                          text=True, timeout=30, cwd=ROOT)  # fmt: skip
    assert done.returncode == 1 and "in use" in done.stderr


@pytest.mark.peer
def test_card_comes_back_after_pcscd_restart(served: Served) -> None:
    if not served.pcscd.ours:
        pytest.fail("a pcscd this test did not start is running; stop it to test a restart")
    served.pcscd.stop()
    deadline = time.monotonic() + 10
    while SOCKET.exists():  # pcscd removes its socket on the way out; start refuses until then
        assert time.monotonic() < deadline, f"{SOCKET} outlived pcscd"
        time.sleep(0.02)
    served.pcscd = Pcscd.start()
    wait_for_card()
    with CardConnection() as connection:
        host.select(connection.transmit)
        assert len(host.list_containers(connection.transmit)) == 2
