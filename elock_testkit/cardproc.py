"""A virtual card for key-host tests: a card file, served behind the real pcscd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from elock_common import pki
from elock_testkit.lockproc import Key
from elock_testkit.pcsc import READER, Pcscd, wait_for_card
from elock_testkit.ports import free_tcp_port
from elock_testkit.procs import terminate
from elock_testkit.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
ELOCK_SE = [sys.executable, "-m", "firmware.virtual.cli"]
COAP_OPEN = [sys.executable, "-m", "key_client.cli"]
ELOCK_PHONE = [sys.executable, "-m", "key_client.phone.cli"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def elock_se(*args: str, extra_env: dict[str, str] | None = None) -> str:
    done = subprocess.run([*ELOCK_SE, *args], capture_output=True, text=True,
                          env={**env(), **(extra_env or {})}, timeout=30)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"elock-se {args[0]} failed: {done.stderr}")
    return done.stdout


def personalize_with_identity(card: Path, paths: pki.PkiPaths, seid: str, *extra: str) -> str:
    """``elock-se personalize --seid``: the card makes its key pair, the PKI's SE issuer CA
    certifies it, and it trusts the PKI's key server CA; what the command printed."""
    return elock_se("personalize", "--card", str(card), "--seid", seid,
                    "--issuer-cert", str(paths.se_issuer_ca.cert),
                    "--issuer-key", str(paths.se_issuer_ca.key),
                    "--key-server-ca", str(paths.key_server_ca.cert), *extra)  # fmt: skip


def make_card(directory: Path, keys: list[tuple[str, str, Key]], *, pin: str | None = None) -> Path:
    """A personalized card file holding (label, uri, key) containers; with a PIN, they need it."""
    card = directory / "card.json"
    elock_se("personalize", "--card", str(card), *(["--pin-env", "CARD_PIN"] if pin else []),
             extra_env={"CARD_PIN": pin} if pin else None)  # fmt: skip
    for label, uri, key in keys:
        elock_se("install", "--card", str(card), "--label", label, "--uri", uri,
                 "--identity", key.identity, f"--psk={key.psk}",  # a PSK may start with "-"
                 *(["--pin-required"] if pin else []))  # fmt: skip
    return card


def coap_open(
    *args: str, timeout: float = 60, pin: str | None = None
) -> tuple[int, dict[str, object], float]:
    """Run ``coap-open --json``; (exit status, its JSON, seconds). ``pin`` goes through
    the environment (``--pin-env``), never the command line."""
    began = time.monotonic()
    pin_args, extra = (["--pin-env", "TEST_PIN"], {"TEST_PIN": pin}) if pin else ([], {})
    done = subprocess.run([*COAP_OPEN, "--json", *pin_args, *args], capture_output=True,
                          text=True, env={**env(), **extra}, timeout=timeout)  # fmt: skip
    elapsed = time.monotonic() - began
    try:
        body = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        body = {"stdout": done.stdout, "stderr": done.stderr}
    return done.returncode, body, elapsed


class ServedCard:
    """``elock-se serve`` on a card file, behind pcscd, as a person would run them."""

    def __init__(self, card: Path) -> None:
        self.card = card
        self.pcscd = Pcscd.start()
        self.log = open(card.with_suffix(".serve.log"), "wb")
        self.proc = subprocess.Popen([*ELOCK_SE, "serve", "--card", str(card)], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env())  # fmt: skip
        try:
            wait_for_card(READER)
        except BaseException:  # pytest.fail included: never leak a pcscd or a card
            self.proc.kill()
            self.proc.wait(10)
            self.log.close()
            self.pcscd.stop()
            raise

    def stop(self) -> None:
        try:
            terminate(self.proc)
            wait_for_card(READER, present=False)  # so the next test cannot see this card
        finally:
            self.log.close()
            self.pcscd.stop()


@contextmanager
def phone_app(card: Path, *options: str) -> Iterator[str]:
    """``elock-phone`` for ``card`` on a free port, once it answers; yields its URL and
    stops it after. Its output goes to ``<card>.phone.log`` beside the card file."""
    port = free_tcp_port()
    log = card.with_suffix(".phone.log")
    with open(log, "ab") as out:
        proc = subprocess.Popen([*ELOCK_PHONE, "--card", str(card), "--port", str(port), *options],
                                stdout=out, stderr=subprocess.STDOUT, env=env())  # fmt: skip
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"elock-phone did not start: {log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                response.read()
        except OSError:
            return False
        return True

    try:
        wait_for(answers, 15, "elock-phone to start")
        yield url
    finally:
        terminate(proc)
