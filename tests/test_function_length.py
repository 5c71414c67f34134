"""No function of the shipped packages grows past 60 lines, unless it is listed here with why.

A long function is where the next change goes wrong: its reader cannot hold it in one
sitting, and each new branch lands in the middle of it. Protocol state machines are the
exception the project allows (one place that lists every transition reads better than many),
and so are database migrations (a record of what was done, never edited afterwards).
"""

from __future__ import annotations

import ast
import functools

from tests.test_boundaries import PARTS, ROOT

MAX_LINES = 60
PACKAGES = (*PARTS, "elock_testkit")
# "path:function" -> why it may be longer than MAX_LINES.
ALLOWED = {
    "key_provisioner/migrations/versions/0001_initial_schema.py:upgrade": (
        "a migration is a record of the first schema: it is never edited, only followed"
    ),
}


def function_length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first decorator (or ``def``) to the last line of the body."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return (node.end_lineno or node.lineno) - first + 1


@functools.cache
def long_functions() -> dict[str, int]:
    """``path:name`` -> length in lines (decorators included) of every function over the limit."""
    found: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                length = function_length(node)
                if length > MAX_LINES:
                    found[f"{path.relative_to(ROOT)}:{node.name}"] = length
    return found


def test_no_function_outside_the_allow_list_is_longer_than_60_lines() -> None:
    grown = {name: n for name, n in long_functions().items() if name not in ALLOWED}
    assert not grown, "split these into named steps (or allow them here, with why):\n" + "\n".join(
        f"  {name}: {n} lines" for name, n in sorted(grown.items())
    )


def test_every_allowed_function_is_still_long() -> None:
    """An entry that no longer needs its exception goes, so the list stays a list of reasons."""
    stale = set(ALLOWED) - set(long_functions())
    assert not stale, f"no longer over {MAX_LINES} lines, remove from ALLOWED: {sorted(stale)}"


def test_the_measure_counts_decorators_and_body() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    plain, decorated = (ast.parse(f"{head}def f():\n{body}\n").body[0] for head in ("", "@d\n"))
    assert isinstance(plain, ast.FunctionDef) and isinstance(decorated, ast.FunctionDef)
    assert function_length(plain) == MAX_LINES
    assert function_length(decorated) == MAX_LINES + 1
