"""Each part imports only ``elock_common``, its own modules and the few published interfaces
another part offers on purpose; the applet never imports the emulator around it.

A part that reaches into another's internals breaks when that part is refactored, and it
drags the other part's dependencies onto machines that should not have them (the lock on a
Pi, the applet on a card).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = (
    "elock_common",
    "firmware",
    "lock_server",
    "key_client",
    "racs",
    "key_provisioner",
    "elock_push",
    "elock_demo",
)
# A part's published interface: the only modules of it that another part may import.
PUBLISHED = {
    "firmware.virtual": "the emulated card, for hosts that run a card file in process",
    "racs.client": "the RACS client library, for whoever pushes through a RACS server",
    "elock_push": "the key push over TLS#1 and TLS#2, for the key server",
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def part_files(part: str) -> list[Path]:
    return sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("part", PARTS)
def test_a_part_imports_only_common_its_own_and_published_interfaces(part: str) -> None:
    wrong = []
    for path in part_files(part):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top not in PARTS or top in (part, "elock_common"):
                continue
            if module not in PUBLISHED:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_applet_never_imports_the_emulator() -> None:
    wrong = []
    for path in part_files("firmware"):
        if "virtual" in path.relative_to(ROOT / "firmware").parts:
            continue
        for line, module in imported_modules(path):
            if module == "firmware.virtual" or module.startswith("firmware.virtual."):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_boundary_check_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from racs.errors import RemoteRacsError\nimport firmware.store\n")
    assert [m for _, m in imported_modules(sample)] == ["racs.errors", "firmware.store"]
