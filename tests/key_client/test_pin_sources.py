"""A PIN never rides on a command line, where `ps` shows it to every user of the machine."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from elock_common.pin_input import PIN_IN_ARGV
from elock_testkit.cardproc import COAP_OPEN, ELOCK_SE, env, make_card
from elock_testkit.lockproc import LockProcess

# Real programs as processes (elock-lock, coap-open, libcoap...): not in the fast run.
pytestmark = pytest.mark.peer

PIN = "2468"


def test_pin_through_a_descriptor_never_shows_in_ps(lock: LockProcess, tmp_path: Path) -> None:
    card = make_card(tmp_path, [("Front door", lock.uri, lock.mint())], pin=PIN)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [*COAP_OPEN, "--json", "--card", str(card), "--pin-fd", str(read_end)],
        pass_fds=(read_end,), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(read_end)
    try:
        # What another user sees while coap-open waits for its PIN: the command line.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        deadline = time.monotonic() + 20
        while b"--pin-fd" not in cmdline and time.monotonic() < deadline:  # until exec is done
            time.sleep(0.02)
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"--pin-fd" in cmdline and PIN.encode() not in cmdline
        os.write(write_end, PIN.encode() + b"\n")
    finally:
        os.close(write_end)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b'"opened"' in out, err
    assert lock.relay_events().count("on") == 1


def test_pin_on_the_command_line_is_refused(lock: LockProcess, tmp_path: Path) -> None:
    card = make_card(tmp_path, [("Front door", lock.uri, lock.mint())], pin=PIN)
    done = subprocess.run([*COAP_OPEN, "--card", str(card), "--pin", PIN],
                          capture_output=True, text=True, env=env(), timeout=60)  # fmt: skip
    assert done.returncode == 2 and PIN_IN_ARGV in done.stderr.replace("\n", " ")
    assert "on" not in lock.relay_events()
    help_text = subprocess.run([*COAP_OPEN, "--help"], capture_output=True, text=True,
                               env=env(), timeout=60).stdout  # fmt: skip
    assert "--pin-fd" in help_text and "--pin-env" in help_text and "ps shows" in help_text
    unset = subprocess.run([*COAP_OPEN, "--json", "--card", str(card), "--pin-env", "NO_SUCH_VAR"],
                           capture_output=True, text=True, env=env(), timeout=60)  # fmt: skip
    assert unset.returncode == 5 and "NO_SUCH_VAR" in unset.stdout


def test_card_pin_is_set_from_the_environment_not_argv(tmp_path: Path) -> None:
    card = tmp_path / "card.json"
    refused = subprocess.run([*ELOCK_SE, "personalize", "--card", str(card), "--pin", PIN],
                             capture_output=True, text=True, env=env(), timeout=60)  # fmt: skip
    assert refused.returncode == 1 and PIN_IN_ARGV in refused.stderr and not card.exists()
    done = subprocess.run([*ELOCK_SE, "personalize", "--card", str(card), "--pin-env", "NEW_PIN"],
                          capture_output=True, text=True, env={**env(), "NEW_PIN": PIN},
                          timeout=60)  # fmt: skip
    assert done.returncode == 0 and "with a PIN" in done.stdout
