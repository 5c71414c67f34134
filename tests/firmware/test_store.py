"""The journaled store and the card file: all-or-nothing under power cuts and crashes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from firmware.errors import NotEnoughMemoryError
from firmware.store import JOURNAL_HEAD, Eeprom, PowerCut, Store
from firmware.virtual import cardfile


def user_cells(eeprom: Eeprom) -> dict[str, bytes]:
    return {k: v for k, v in eeprom.cells.items() if not k.startswith("j.")}


def test_transaction_commits_and_wipes_journal() -> None:
    store = Store(Eeprom())
    with store.transaction() as tx:
        tx.put("a", b"one")
        tx.put("b", b"two")
    assert store.get("a") == b"one" and store.get("b") == b"two"
    assert store.names("j.") == [JOURNAL_HEAD]  # entries erased after commit
    with store.transaction() as tx:
        tx.delete("a")
    assert store.get("a") is None


def test_exception_inside_transaction_writes_nothing() -> None:
    store = Store(Eeprom())
    steps = store.eeprom.steps
    with pytest.raises(KeyError), store.transaction() as tx:
        tx.put("a", b"x")
        raise KeyError("caller changed its mind")
    assert store.get("a") is None and store.eeprom.steps == steps


def test_cell_names_and_size_limits() -> None:
    store = Store(Eeprom(capacity=200))
    with pytest.raises(ValueError), store.transaction() as tx:
        tx.put("j.0", b"")
    with pytest.raises(ValueError), store.transaction() as tx:
        for i in range(9):
            tx.put(f"k{i}", b"")
    with pytest.raises(NotEnoughMemoryError), store.transaction() as tx:
        tx.put("big", bytes(150))
    assert store.get("big") is None


def _old_and_new() -> tuple[dict[str, bytes], dict[str, bytes]]:
    old = {"a": b"A" * 40, "b": b"B" * 40, "c": b"C"}
    new = {"a": b"a" * 60, "c": b"c", "d": b"D" * 10}  # b deleted, a grown, d added
    return old, new


def _update(store: Store) -> None:
    with store.transaction() as tx:
        tx.put("a", b"a" * 60)
        tx.delete("b")
        tx.put("c", b"c")
        tx.put("d", b"D" * 10)


@pytest.mark.parametrize("tear", [False, True], ids=["lost-write", "torn-write"])
def test_power_cut_at_every_step_leaves_old_or_new(tear: bool) -> None:
    old, new = _old_and_new()
    probe = Store(Eeprom(dict(old)))
    start = probe.eeprom.steps
    _update(probe)
    total = probe.eeprom.steps - start
    assert total >= 8  # 4 journal entries, head, 4 applies, head, 4 wipes
    seen = set()
    for cut in range(total + 1):
        eeprom = Eeprom(dict(old))
        store = Store(eeprom)
        eeprom.cut_at, eeprom.tear = eeprom.steps + cut, tear
        try:
            _update(store)
        except PowerCut:
            pass
        eeprom.cut_at = None
        recovered = Store(eeprom)  # power up
        state = user_cells(recovered.eeprom)
        assert state in (old, new), f"cut at step {cut}: {state}"
        seen.add("new" if state == new else "old")
        assert recovered.names("j.") in ([], [JOURNAL_HEAD])  # nothing left to leak
    assert seen == {"old", "new"}


def test_card_file_round_trip(tmp_path: Path) -> None:
    store = Store(Eeprom())
    with store.transaction() as tx:
        tx.put("c.1", b"\x00\xff")
    path = tmp_path / "card.json"
    cardfile.save(path, store.eeprom)
    assert not store.eeprom.dirty
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert cardfile.load(path).cells == store.eeprom.cells


def test_card_file_replace_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "card.json"
    cardfile.save(path, Eeprom({"x": b"old"}))

    def crash(src: str, dst: str) -> None:
        raise OSError("crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        cardfile.save(path, Eeprom({"x": b"new"}))
    assert cardfile.load(path).cells == {"x": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]  # no temp left behind


def test_card_file_refuses_open_journal_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        cardfile.save(tmp_path / "c.json", Eeprom({JOURNAL_HEAD: b"\x01"}))
    bad = tmp_path / "bad.json"
    for text in (
        "not json",
        json.dumps({"format": "other"}),
        json.dumps({"format": "elock-card", "version": 1, "cells": {"a": "zz"}}),
    ):
        bad.write_text(text)
        with pytest.raises(cardfile.CardFileError):
            cardfile.load(bad)
    with pytest.raises(cardfile.CardFileError):
        cardfile.load(tmp_path / "missing.json")
