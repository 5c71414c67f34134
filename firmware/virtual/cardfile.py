"""The virtual card's EEPROM image on disk, replaced atomically.

The card file is the whole persistent state (it holds PSKs and the transport
key, like a real card's EEPROM), so it is created 0600 and replaced in one
step: write a temporary file beside it, fsync it, rename it over the old one,
fsync the directory. A crash at any point leaves the old file or the new one.
The simulated EEPROM's own journal makes each APDU all-or-nothing; saving only
between APDUs, when no journal is open, makes each saved image consistent.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from firmware.store import JOURNAL_HEAD, Eeprom

FORMAT = "elock-card"
VERSION = 1


class CardFileError(Exception):
    """The card file is missing, unreadable or not an eLock card."""


def load(path: Path) -> Eeprom:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CardFileError(f"cannot read card file {path}: {type(exc).__name__}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise CardFileError(f"{path} is not an {FORMAT} v{VERSION} file")
    cells = doc.get("cells")
    if not isinstance(cells, dict):
        raise CardFileError(f"{path} has no cells")
    try:
        image = {str(k): bytes.fromhex(v) for k, v in cells.items()}
    except (TypeError, ValueError):
        raise CardFileError(f"{path} has a malformed cell") from None
    capacity = doc.get("capacity")
    return Eeprom(image, capacity if isinstance(capacity, int) else Eeprom().capacity)


def save(path: Path, eeprom: Eeprom) -> None:
    """Replace *path* with the image of *eeprom*; tear-safe on a POSIX filesystem."""
    head = eeprom.read(JOURNAL_HEAD)
    if head and head[0]:
        raise RuntimeError("refusing to save an image with an open journal")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "capacity": eeprom.capacity,
        "cells": {k: v.hex() for k, v in sorted(eeprom.cells.items())},
    }
    data = (json.dumps(doc, indent=1) + "\n").encode()
    directory = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    eeprom.dirty = False
