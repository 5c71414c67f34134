"""Persistent card state with tear-safe updates, over a simulated EEPROM.

A card can lose power between any two writes (the user pulls it out of the
reader). Java Card answers with transactions; this store does the same thing
explicitly so the Python reference shows every step a port must keep:

1. each new value goes to a journal cell (``j.0``, ``j.1`` ...): the shadow copy;
2. the one-byte journal head ``j.head`` is set to the entry count: the commit
   point (a single-byte write is atomic on Java Card and here);
3. each journal entry is copied to its home cell;
4. the head is set back to 0;
5. the journal cells are erased, so a deleted key leaves no copy behind.

On power-up ``recover`` redoes steps 3-4 when the head is non-zero, and ignores
the journal otherwise. A cut before step 2 therefore leaves the old state, a
cut after it the new one, whatever half-written cell the cut left behind.
Tests cut power at write step N with ``Eeprom.cut_at`` (and ``tear=True`` for a
half-written cell) and check exactly that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from firmware.errors import NotEnoughMemoryError

JOURNAL_HEAD = "j.head"
JOURNAL_PREFIX = "j."
MAX_ENTRIES = 8
DEFAULT_CAPACITY = 32 * 1024
_PUT, _DELETE = 1, 2


class PowerCut(BaseException):
    """The simulated card lost power at a write step.

    A ``BaseException`` so that no ``except Exception`` in the applet can hide it.
    """


class Eeprom:
    """Named cells of bytes; every write or erase is one step and may be cut."""

    def __init__(self, cells: dict[str, bytes] | None = None, capacity: int = DEFAULT_CAPACITY):
        self.cells: dict[str, bytes] = dict(cells or {})
        self.capacity = capacity
        self.steps = 0
        self.cut_at: int | None = None
        self.tear = False
        self.dirty = False

    def __repr__(self) -> str:
        return f"Eeprom(<{len(self.cells)} cells>, steps={self.steps})"

    def read(self, name: str) -> bytes | None:
        return self.cells.get(name)

    def used(self) -> int:
        return sum(len(k) + len(v) for k, v in self.cells.items())

    def write(self, name: str, value: bytes | None) -> None:
        """Write (or erase, with None) one cell: one step."""
        if self.cut_at is not None and self.steps >= self.cut_at:
            old = self.cells.get(name, b"")
            if self.tear and max(len(old), len(value or b"")) > 1:
                new = value or b""
                half = max(len(new), len(old)) // 2
                self.cells[name] = (new[:half] + old[half:]) if value is not None else old[:half]
                self.dirty = True
            raise PowerCut(f"power lost at write step {self.steps}")
        self.steps += 1
        self.dirty = True
        if value is None:
            self.cells.pop(name, None)
        else:
            self.cells[name] = bytes(value)


@dataclass
class Transaction:
    """Updates collected in RAM; nothing touches the EEPROM before ``commit``."""

    store: Store
    entries: dict[str, bytes | None] = field(default_factory=dict)

    def put(self, name: str, value: bytes) -> None:
        self._check(name)
        self.entries[name] = bytes(value)

    def delete(self, name: str) -> None:
        self._check(name)
        self.entries[name] = None

    def _check(self, name: str) -> None:
        if name.startswith(JOURNAL_PREFIX) or not 0 < len(name.encode()) < 64:
            raise ValueError(f"bad cell name {name!r}")
        if name not in self.entries and len(self.entries) >= MAX_ENTRIES:
            raise ValueError("too many updates in one transaction")


class Store:
    """The applet's persistent state; reads are direct, writes go through transactions."""

    def __init__(self, eeprom: Eeprom) -> None:
        self.eeprom = eeprom
        self.recover()

    def __repr__(self) -> str:
        return f"Store({self.eeprom!r})"

    def get(self, name: str) -> bytes | None:
        return self.eeprom.read(name)

    def names(self, prefix: str) -> list[str]:
        return sorted(n for n in self.eeprom.cells if n.startswith(prefix))

    def write_byte(self, name: str, value: int) -> None:
        """One atomic single-byte write, for counters (as Java Card's OwnerPIN does)."""
        self.eeprom.write(name, bytes([value]))

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """``with store.transaction() as tx: tx.put(...)``: all or nothing."""
        tx = Transaction(self)
        yield tx
        self._commit(tx.entries)

    def _commit(self, entries: dict[str, bytes | None]) -> None:
        if not entries:
            return
        journal = [_encode_entry(name, value) for name, value in entries.items()]
        growth = sum(len(e) + 4 for e in journal) + sum(
            (len(name) + len(value) if value is not None else 0)
            - len(self.eeprom.read(name) or b"")
            for name, value in entries.items()
        )
        if self.eeprom.used() + growth > self.eeprom.capacity:
            raise NotEnoughMemoryError("the update does not fit in the store")
        for i, entry in enumerate(journal):
            self.eeprom.write(f"{JOURNAL_PREFIX}{i}", entry)
        self.eeprom.write(JOURNAL_HEAD, bytes([len(journal)]))
        self._apply(len(journal))

    def recover(self) -> None:
        """Power-up: finish a committed transaction, forget an uncommitted one."""
        head = self.eeprom.read(JOURNAL_HEAD)
        if head and head[0]:
            self._apply(head[0])
        else:
            self._wipe()

    def _apply(self, count: int) -> None:
        for i in range(count):
            entry = self.eeprom.read(f"{JOURNAL_PREFIX}{i}")
            if entry is None:
                raise RuntimeError("committed journal entry missing")
            name, value = _decode_entry(entry)
            self.eeprom.write(name, value)
        self.eeprom.write(JOURNAL_HEAD, b"\x00")
        self._wipe()

    def _wipe(self) -> None:
        """Erase journal entries left by a finished (or never committed) transaction."""
        for name in self.names(JOURNAL_PREFIX):
            if name != JOURNAL_HEAD:
                self.eeprom.write(name, None)


def _encode_entry(name: str, value: bytes | None) -> bytes:
    raw = name.encode()
    op = _DELETE if value is None else _PUT
    return bytes([op, len(raw)]) + raw + (value or b"")


def _decode_entry(entry: bytes) -> tuple[str, bytes | None]:
    op, n = entry[0], entry[1]
    name = entry[2 : 2 + n].decode()
    return name, (None if op == _DELETE else bytes(entry[2 + n :]))
