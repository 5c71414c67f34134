"""Property-based testing of the running server from its OpenAPI description.

schemathesis's own command (every phase: examples, coverage, fuzzing,
stateful; every check) against ``elock-keyserver serve`` with an admin
token, on SQLite and on PostgreSQL. It must find no server error and no
answer that breaks the description: status codes, media types, bodies,
headers, Allow on 405, auth actually enforced.

One check is off: ``positive_data_acceptance`` expects every schema-valid
request to succeed, but some rules are not expressible in JSON Schema (a
lock id that must exist, ``not_before`` < ``not_after``, a cursor that must
be one the API returned); those answer 422 by design (docs/admin-api.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from elock_testkit.liveserver import env, start_keyserver

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = """\
# Every check runs (the default) but this one; see the module docstring.
[checks.positive_data_acceptance]
enabled = false

[[operations]]
include-path-regex = "^/keys/\\\\{{key_uuid\\\\}}"
parameters = {{ "path.key_uuid" = "{key}" }}

[[operations]]
include-path-regex = "^/locks/\\\\{{lock_id\\\\}}"
parameters = {{ "path.lock_id" = "{lock}" }}

[[operations]]
include-path-regex = "^/secure-elements/\\\\{{element_id\\\\}}"
parameters = {{ "path.element_id" = "{se}" }}
"""


@pytest.mark.slow
@pytest.mark.peer  # schemathesis drives the running API as an outside client would
def test_schemathesis_finds_nothing(tmp_path: Path, database_url: str) -> None:
    assert SCHEMATHESIS.exists(), "run: .venv/bin/pip install schemathesis"
    server = start_keyserver(tmp_path / "keyserver", database_url, worker=False)
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers) as api:
            # Real ids for the operations that take one, so they get past 404.
            lock = api.post("/locks", json={"name": "st", "host": "127.0.0.1"}).json()["lock"]
            se = api.post("/secure-elements", json={"seid": "st", "racs_server": "h:1"}).json()
            key = api.post("/keys", json={"lock_id": lock["id"], "secure_element_id": se["id"]})
        config = tmp_path / "schemathesis.toml"
        text = CONFIG.format(key=key.json()["id"], lock=lock["id"], se=se["id"])
        config.write_text(text)
        done = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(config),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {server.token}",
                "--max-examples",
                "25",
                "--seed",
                "20250101",
                "--no-color",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            env=env(),
            timeout=170,
            cwd=tmp_path,
        )
    finally:
        server.process.stop()
    report = done.stdout + done.stderr
    (tmp_path / "schemathesis-report.txt").write_text(report)
    # Long generated bodies would drown the findings: keep the readable lines.
    short = "\n".join(line[:300] for line in report.splitlines() if len(line) < 2000)
    assert done.returncode == 0, short[-12000:]
    assert "18 selected / 18 total" in report, short[-12000:]
    summary = report.split("SUMMARY")[-1]
    assert "Failures:" not in summary and "Errors:" not in summary, summary
