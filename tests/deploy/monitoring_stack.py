"""Debian's real Prometheus over the shipped scrape config, templated to a test's ports.

Only the targets, the scheme of the key server (plain HTTP on loopback here),
the token file and the intervals change; the jobs, the rule file and
everything else are the shipped ones, so a broken shipped file breaks the test.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from elock_testkit.procs import terminate

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "prometheus"


def templated_config(directory: Path, targets: dict[str, str], token: str, lock: str) -> Path:
    """The shipped prometheus.yml aimed at ``targets`` (job -> host:port), 1 s intervals."""
    config = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(SHIPPED / name) for name in config["rule_files"]]
    token_file = directory / "keyserver.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    for job in config["scrape_configs"]:
        name = job["job_name"]
        job["static_configs"][0]["targets"] = [targets[name]]
        if name == "elock-keyserver":
            job["scheme"] = "http"
            job["authorization"]["credentials_file"] = str(token_file)
        if name == "elock-lock":
            job["static_configs"][0]["labels"]["lock"] = lock
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    """``prometheus`` on a loopback port with its own TSDB in ``directory``."""

    def __init__(self, exe: str, config: Path, directory: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(directory / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={directory / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            self.wait(self._ready, 30, "prometheus ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.proc.poll() is None, (self.log.name, Path(self.log.name).read_text())
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def value(self, promql: str) -> float | None:
        """The value of an instant query that gives at most one series (None: no series)."""
        result = self.api("query", query=promql)["result"]
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, promql: str, ok: Callable[[float], bool], timeout: float = 30) -> float:
        def moved() -> float | None:
            value = self.value(promql)
            return value if value is not None and ok(value) else None

        return float(self.wait(moved, timeout, promql))

    @staticmethod
    def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (value := condition()) is not None and value is not False:
                return value
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout} s")

    def stop(self) -> None:
        try:
            terminate(self.proc, 15)
        finally:
            self.log.close()
