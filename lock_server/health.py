"""Is this lock healthy? What ``elock-lock status`` answers with its exit code.

For systemd (``ExecStartPost``/a timer) or a monitoring agent: exit 0 when
healthy, 1 when not, with the reasons under ``problems`` in ``--json``. It
reads the files the lock serves from, and asks the running lock's metrics
listener (when ``[metrics]`` is on) whether ``serve`` is up and its database
readable; without that listener it cannot tell whether ``serve`` runs.
"""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from lock_server.config import LockConfig
from lock_server.errors import LockConfigError

PROBE_TIMEOUT = 2.0


def problems(config: LockConfig) -> list[str]:
    """Why the lock is not healthy; empty when it is."""
    found: list[str] = []
    try:
        config.load_secret()
    except LockConfigError as exc:
        found.append(str(exc))
    found += _database(config)
    if config.metrics.enabled:
        found += _serving(config)
    return found


def _database(config: LockConfig) -> list[str]:
    path = config.data_dir / "lock.sqlite3"
    if not path.exists():
        return [f"no database at {path} (the lock never ran)"]
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [f"database {path} unreadable: {exc}"]
    return [] if verdict == "ok" else [f"database {path} damaged: {verdict}"]


def _serving(config: LockConfig) -> list[str]:
    host = f"[{config.metrics.host}]" if ":" in config.metrics.host else config.metrics.host
    url = f"http://{host}:{config.metrics.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:
            body = response.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError) as exc:
        return [f"serve does not answer on {url}: {exc}"]
    try:
        up = [
            sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name == "elock_lock_database_up"
        ]
    except ValueError:
        return [f"{url} does not answer Prometheus metrics"]
    return [] if up == [1.0] else ["serve cannot read its database"]
