"""The demo's pcscd handling says what to do when it cannot start pcscd (unit test, no pcscd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from elock_demo import pcscd


def test_a_normal_user_is_told_to_start_pcscd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcscd.shutil, "which", lambda *a, **k: "/usr/sbin/pcscd")
    monkeypatch.setattr(pcscd, "VPCD_DRIVER", Path(__file__))
    monkeypatch.setattr(pcscd, "pcscd_alive", lambda: False)
    monkeypatch.setattr(pcscd.os, "geteuid", lambda: 1000)
    with pytest.raises(pcscd.PcscdError, match=r"only root can start it: run `sudo pcscd`"):
        pcscd.Pcscd.start()


def test_a_live_pcscd_is_reused_and_never_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcscd.shutil, "which", lambda *a, **k: "/usr/sbin/pcscd")
    monkeypatch.setattr(pcscd, "VPCD_DRIVER", Path(__file__))
    monkeypatch.setattr(pcscd, "pcscd_alive", lambda: True)
    daemon = pcscd.Pcscd.start()
    assert not daemon.ours
    daemon.stop()  # nothing to stop: someone else's


def test_missing_pieces_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcscd.shutil, "which", lambda *a, **k: None)
    with pytest.raises(pcscd.PcscdError, match="pcscd is not installed"):
        pcscd.Pcscd.start()
    monkeypatch.setattr(pcscd.shutil, "which", lambda *a, **k: "/usr/sbin/pcscd")
    monkeypatch.setattr(pcscd, "VPCD_DRIVER", Path("/nonexistent/libifdvpcd.so"))
    with pytest.raises(pcscd.PcscdError, match="install vsmartcard-vpcd"):
        pcscd.Pcscd.start()
