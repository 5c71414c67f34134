#!/usr/bin/env python3
"""Draw the phone app's PNG icons (the SVG's padlock) with the standard library only.

python3 scripts/make_icons.py   # writes key_client/phone/static/icon-{192,512}.png
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

GREEN, PALE = (0x1B, 0x43, 0x32), (0xD8, 0xF3, 0xDC)


def pixel(x: float, y: float) -> tuple[int, int, int, int]:
    """Colour at (x, y) in the SVG's 64x64 space."""

    def in_round_rect(x0: float, y0: float, w: float, h: float, r: float) -> bool:
        cx, cy = min(max(x, x0 + r), x0 + w - r), min(max(y, y0 + r), y0 + h - r)
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r and x0 <= x <= x0 + w and y0 <= y <= y0 + h

    if not in_round_rect(0, 0, 64, 64, 14):
        return (0, 0, 0, 0)
    keyhole = (x - 32) ** 2 + (y - 38) ** 2 <= 16 or (30 <= x <= 34 and 40 <= y <= 47)
    if in_round_rect(16, 28, 32, 24, 4):
        return (*GREEN, 255) if keyhole else (*PALE, 255)
    ring = abs(math.hypot(x - 32, y - 22) - 10) <= 2.5 and y <= 22
    legs = (abs(x - 22) <= 2.5 or abs(x - 42) <= 2.5) and 22 <= y <= 28
    return (*PALE, 255) if ring or legs else (*GREEN, 255)


def png(size: int) -> bytes:
    rows = []
    for j in range(size):
        row = bytearray([0])
        for i in range(size):
            row += bytes(pixel((i + 0.5) * 64 / size, (j + 0.5) * 64 / size))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "key_client" / "phone" / "static"
    for size in (192, 512):
        (out / f"icon-{size}.png").write_bytes(png(size))
        print(f"wrote {out / f'icon-{size}.png'}")
