"""The shipped monitoring files against real programs.

``promtool`` checks the rules and the scrape config; the dashboard and the
rules name only metrics the code exports; and Debian's ``prometheus``, run
with the shipped config and rules, scrapes a real key server (two uvicorn
workers), lock and RACS server while a key is issued, opens the door, is
revoked and refused: its HTTP API must show each of those moves, counted once.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from elock_demo.services import KeyServerApi
from elock_testkit.cardproc import coap_open
from elock_testkit.liveserver import Process, free_tcp_port, run_module, start_demo_keyserver
from elock_testkit.lockproc import Key, LockProcess, coap
from elock_testkit.pcsc import READER
from elock_testkit.waiting import wait_for
from key_provisioner.observability import metric_names as keyserver_metrics
from lock_server.metrics import metric_names as lock_metrics
from racs.metrics import metric_names as racs_metrics
from tests.conftest import require_tool
from tests.deploy.monitoring_stack import SHIPPED, Prometheus, templated_config
from tests.push.test_e2e_keyserver_pcsc import (
    elock_pki_init,
    enrolled_lock,
    push_state,
    served_card_and_racs,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "elock-dashboard.json"
SEID = "card-metrics-16"
_SUFFIXES = ("_bucket", "_count", "_sum")


def exported() -> set[str]:
    return keyserver_metrics() | lock_metrics() | racs_metrics()


def _named(expr: str) -> set[str]:
    names = set(re.findall(r"\b((?:elock|racs)_[a-z0-9_]+)", expr))
    return {next((n.removesuffix(s) for s in _SUFFIXES if n.endswith(s)), n) for n in names}


def test_dashboard_and_rules_use_only_exported_metrics() -> None:
    known = exported()
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    rules = yaml.safe_load((SHIPPED / "elock-rules.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for expr in exprs:
        unknown = _named(expr) - known
        assert not unknown, f"{expr}: {unknown}"
    used = set().union(*map(_named, exprs))
    assert {"elock_keyserver_lock_revocation_unconfirmed_seconds",
            "elock_keyserver_lock_last_seen_timestamp_seconds"} <= used  # fmt: skip


@pytest.mark.peer
def test_promtool_checks_the_shipped_rules_and_config(tmp_path: Path) -> None:
    """Rules and config are valid, and the alerts fire when they should (rule unit tests)."""
    promtool = require_tool("promtool")
    rules = subprocess.run([promtool, "check", "rules", str(SHIPPED / "elock-rules.yml")],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert rules.returncode == 0, rules.stdout + rules.stderr
    alerts = subprocess.run([promtool, "test", "rules", str(SHIPPED / "elock-rules.test.yml")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert alerts.returncode == 0, alerts.stdout + alerts.stderr
    syntax = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(SHIPPED / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    # In full (token file and rule files read), once the token file exists.
    targets = {"elock-keyserver": "127.0.0.1:1", "racs-server": "127.0.0.1:2",
               "elock-lock": "127.0.0.1:3"}  # fmt: skip
    config = templated_config(tmp_path, targets, "token", "front-door")
    full = subprocess.run([promtool, "check", "config", str(config)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert full.returncode == 0, full.stdout + full.stderr


def _keyserver(directory: Path, paths_dir: Path) -> tuple[KeyServerApi, str, Process]:
    api, process, cli = start_demo_keyserver(
        directory,
        paths_dir,
        worker_extra="audit_seconds = 1\n",
        serve=("--log-format", "json", "serve", "--workers", "2"),
        ready="Application startup complete",
        timeout=90,  # two workers take longer than one
    )
    scraper = run_module(*cli, "token", "create", "--role", "auditor", "--name", "prom").strip()
    return api, scraper, process


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[KeyServerApi, LockProcess, Prometheus, str, str]]:
    """Card behind pcscd, RACS, key server, lock, then Prometheus scraping all three."""
    exe = require_tool("prometheus")
    paths = elock_pki_init(tmp_path / "pki")
    with ExitStack() as stack:  # every stop runs, whatever one of them raised
        racs_metrics_port = free_tcp_port()
        racs = served_card_and_racs(stack, tmp_path, paths, SEID, metrics_port=racs_metrics_port)
        api, scraper, keyserver = _keyserver(tmp_path / "keyserver", paths.directory)
        stack.callback(keyserver.stop)
        lock_metrics_port = free_tcp_port()
        metrics = f"\n[metrics]\nenabled = true\nport = {lock_metrics_port}\n"
        lock, enrolled = enrolled_lock(stack, api, tmp_path, "gate", config=metrics)
        body = {"seid": SEID, "racs_server": f"127.0.0.1:{racs.port}", "label": "gate"}
        se = api.call("POST", "/secure-elements", body)
        targets = {
            "elock-keyserver": api.url.removeprefix("http://"),
            "racs-server": f"127.0.0.1:{racs_metrics_port}",
            "elock-lock": f"127.0.0.1:{lock_metrics_port}",
        }
        (tmp_path / "prom").mkdir()
        config = templated_config(tmp_path / "prom", targets, scraper, "gate")
        prometheus = Prometheus(exe, config, tmp_path / "prom", free_tcp_port())
        stack.callback(prometheus.stop)
        yield api, lock, prometheus, enrolled["lock"]["id"], se["id"]


@pytest.mark.peer
@pytest.mark.slow
def test_prometheus_sees_issue_open_revoke_and_refusal(
    fleet: tuple[KeyServerApi, LockProcess, Prometheus, str, str],
) -> None:
    api, lock, prom, lock_id, se_id = fleet
    for job in ("elock-keyserver", "elock-lock", "racs-server"):
        prom.wait_value(f'up{{job="{job}"}}', lambda v: v == 1)
    rules = prom.api("rules")["groups"]
    assert rules and all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
    assert prom.value('elock_lock_opens_total{outcome="granted"}') in (None, 0.0)

    key = api.call("POST", "/keys", {"lock_id": lock_id, "secure_element_id": se_id,
                                     "label": "Gate"})  # fmt: skip
    wait_for(push_state(api, key["id"], "installed"), 30, "push installed")
    status, opened, _ = coap_open("Gate", "--reader", READER)
    assert status == 0 and opened["status"] == "opened", opened
    api.call("POST", f"/keys/{key['id']}/revoke", {"reason": "lost"})
    wait_for(push_state(api, key["id"], "removed"), 30, "push removed")
    wait_for(lambda: api.call("GET", f"/locks/{lock_id}")["revocation"]["in_sync"], 30, "in sync")
    copy = Key(key["identity"], key["psk"], key["key_id"])
    assert "4.01 key revoked" in coap("coap-client-openssl", "post", copy, key["uri"])

    # The lock: one open granted, one refused as revoked, the relay moved, the list arrived.
    prom.wait_value('elock_lock_opens_total{outcome="granted",lock="gate"}', lambda v: v == 1)
    prom.wait_value('elock_lock_opens_total{outcome="refused",reason="revoked"}', lambda v: v == 1)
    prom.wait_value("elock_lock_relay_actuations_total", lambda v: v == 1)
    prom.wait_value("elock_lock_revocation_version", lambda v: v >= 1)
    # The key server, two workers, counted once: one issue, one revoke, the card pushes.
    prom.wait_value('elock_keyserver_http_requests_total{method="POST",route="/keys",'
                    'status="201"}', lambda v: v == 1)  # fmt: skip
    prom.wait_value('elock_keyserver_http_requests_total{method="POST",'
                    'route="/keys/{key_uuid}/revoke",status="200"}', lambda v: v == 1)  # fmt: skip
    prom.wait_value('sum(elock_keyserver_card_pushes_total{outcome="done"})', lambda v: v >= 2)
    prom.wait_value('sum(elock_keyserver_revocation_pushes_total{outcome="confirmed"})',
                    lambda v: v >= 1)  # fmt: skip
    prom.wait_value('sum(elock_keyserver_keys{state="revoked"})', lambda v: v == 1)
    prom.wait_value('elock_keyserver_lock_revocation_versions_behind{lock="gate"}',
                    lambda v: v == 0)  # fmt: skip
    prom.wait_value('elock_keyserver_lock_connected{lock="gate"}', lambda v: v == 1)
    prom.wait_value("sum(elock_keyserver_worker_rounds_total)", lambda v: v > 0)
    prom.wait_value("sum(elock_keyserver_audit_rows_ingested_total)", lambda v: v >= 2)
    # The RACS server carried the pushes: APDUs answered by the card, and timed.
    prom.wait_value('racs_apdus_total{outcome="sw_ok"}', lambda v: v > 0)
    prom.wait_value("racs_card_round_trip_seconds_count", lambda v: v > 0)
    prom.wait_value('racs_commands_total{command="poweron",outcome="ok"}', lambda v: v >= 2)

    # No key id or peer address as a label anywhere Prometheus holds.
    series = prom.api("series", **{"match[]": '{__name__=~"elock_.+|racs_.+"}'})
    assert series
    for labels in series:
        assert not {"key_id", "peer", "user", "seid"} & set(labels), labels
        for name, value in labels.items():
            if name != "instance":
                assert "127.0.0.1" not in value and key["key_id"] not in value, labels
    # The worker's JSON log lines carry the lock id and the outcome.
    log = (lock.directory.parent / "keyserver" / "keyserver.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("outcome") == "confirmed" and line.get("lock_id") == lock_id
               for line in lines), lines[-5:]  # fmt: skip
