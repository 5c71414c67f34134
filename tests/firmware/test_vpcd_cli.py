"""``elock-se`` on a card file: personalize, install, list, delete, and its refusals."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from firmware.personalization import CELL_TRANSPORT_KEY
from firmware.pin import CELL_TRIES
from firmware.virtual import cardfile
from firmware.virtual.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_personalize_install_list_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    card, tk = tmp_path / "card.json", tmp_path / "tk.hex"
    monkeypatch.setenv("NEW_CARD_PIN", "1234")
    code, out, _ = run(capsys, "personalize", "--card", str(card), "--pin-env", "NEW_CARD_PIN",
                       "--pin-tries", "5", "--transport-key-file", str(tk))  # fmt: skip
    assert code == 0 and "with a PIN" in out
    assert os.stat(tk).st_mode & 0o777 == 0o600 and os.stat(card).st_mode & 0o777 == 0o600
    image = cardfile.load(card)
    assert image.read(CELL_TRANSPORT_KEY) == bytes.fromhex(tk.read_text())
    assert image.read(CELL_TRIES) == b"\x05"
    assert run(capsys, "personalize", "--card", str(card))[0] == 1  # exists

    psk_file = tmp_path / "psk"
    psk_file.write_text("PSK~fromFile~01\n")
    base = ["install", "--card", str(card), "--uri", "coaps://lock.example/lock"]
    assert run(capsys, *base, "--label", "A", "--identity", "ID-A", "--psk-file", str(psk_file),
               "--transport-key-file", str(tk))[1] == "installed container 1\n"  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"PSK~fromStdin~2\n")))
    assert run(capsys, *base, "--label", "B", "--identity", "ID-B", "--psk-stdin",
               "--pin-required", "--not-after", "2000000000")[0] == 0  # fmt: skip
    assert (
        run(capsys, *base, "--label", "C", "--identity", "ID-C", "--psk", "PSK~onCmdLine3")[0] == 0
    )

    code, out, _ = run(capsys, "list", "--card", str(card))
    assert code == 0 and out.count("\n") == 3
    assert "'B'" in out and "pin" in out and "2000000000" in out and "PSK~" not in out
    cells = cardfile.load(card).cells.values()
    assert any(b"PSK~fromStdin~2" in v for v in cells)  # stored, as a card stores it

    assert run(capsys, "delete", "--card", str(card), "--id", "2")[0] == 0
    code, _, err = run(capsys, "delete", "--card", str(card), "--id", "2")
    assert code == 1 and "6A82" in err
    assert "'B'" not in run(capsys, "list", "--card", str(card))[1]


def test_refusals_are_reported_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = tmp_path / "card.json"
    run(capsys, "personalize", "--card", str(card))
    base = ["install", "--card", str(card), "--label", "X", "--identity", "ID"]
    code, _, err = run(capsys, *base, "--uri", "http://x/", "--psk", "PSK~secret~xyz")
    assert code == 1 and "coaps://" in err and "PSK~secret~xyz" not in err
    code, _, err = run(capsys, *base, "--uri", "coaps://x/")
    assert code == 1 and "--psk" in err
    code, _, err = run(capsys, *base, "--uri", "coaps://x/", "--psk", "p",
                       "--transport-key-file", str(tmp_path / "missing"))  # fmt: skip
    assert code == 1
    wrong = tmp_path / "wrong.hex"
    wrong.write_text("00" * 32)
    code, _, err = run(capsys, *base, "--uri", "coaps://x/", "--psk", "p",
                       "--transport-key-file", str(wrong))  # fmt: skip
    assert code == 1 and "6982" in err
    assert run(capsys, "list", "--card", str(tmp_path / "nope.json"))[0] == 1
    assert "no containers" in run(capsys, "list", "--card", str(card))[1]


def test_personalize_reuses_a_transport_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tk = tmp_path / "tk.hex"
    tk.write_text("ab" * 32 + "\n")
    for name in ("one.json", "two.json"):
        assert run(capsys, "personalize", "--card", str(tmp_path / name),
                   "--transport-key-file", str(tk))[0] == 0  # fmt: skip
        assert cardfile.load(tmp_path / name).read(CELL_TRANSPORT_KEY) == b"\xab" * 32
    tk.write_text("abcd")
    assert run(capsys, "personalize", "--card", str(tmp_path / "three.json"),
               "--transport-key-file", str(tk))[0] == 1  # fmt: skip
