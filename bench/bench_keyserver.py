#!/usr/bin/env python3
"""Key server throughput and latency with 100,000 keys in the database.

For each database (SQLite file; PostgreSQL in a throwaway cluster, or the
server given by --postgres-url): migrate, seed --keys keys (minted for real,
spread over 20 locks and 200 secure elements, 2% revoked, 2% expired), then
measure through the API, in process (FastAPI app + service layer + database;
no network, no TLS):

* key issue: --issue sequential ``POST /keys`` (mint, seal check, insert),
  reported as median latency and throughput;
* list latency: ``GET /keys`` (50 per page) unfiltered, by lock, by secure
  element, by label, by state, by key id, and 200 pages deep by cursor;
  medians of --lists runs each; then the same lists through the service layer
  alone (``svc_*``), which shows what the database costs and what HTTP adds;
  the key id filter also without its index, dropped for a moment, as the
  reference measured in the same run.

    .venv/bin/python bench/bench_keyserver.py [--keys 100000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from elock_common import Rights, mint_key  # noqa: E402
from elock_testkit.pgcluster import PgCluster, find_bin  # noqa: E402
from key_provisioner.api.main import create_app  # noqa: E402
from key_provisioner.core.config import Settings, WorkerSettings  # noqa: E402
from key_provisioner.core.crypto import MasterKey  # noqa: E402
from key_provisioner.db.engine import make_engine  # noqa: E402
from key_provisioner.db.migrate import upgrade  # noqa: E402
from key_provisioner.db.models import Key  # noqa: E402
from key_provisioner.schemas.keys import KeyState  # noqa: E402
from key_provisioner.services import keys, locks, secure_elements, tokens  # noqa: E402
from key_provisioner.services.admin_audit import Actor  # noqa: E402
from key_provisioner.services.keys import KeyFilter  # noqa: E402
from key_provisioner.services.locks import NewLock  # noqa: E402
from key_provisioner.services.secure_elements import NewSecureElement  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

LOCKS, ELEMENTS, LABELS = 20, 200, 50
KEY_ID_INDEX = "ix_keys_key_id_issued_at_id"


def seed(app: Any, n_keys: int) -> dict[str, Any]:
    state = app.state.elock
    rng = random.Random(1)
    with state.sessions() as session:
        seeder, _ = tokens.create(session, tokens.Role.ADMIN, "seed")
        actor = Actor(seeder.id, "bench")
        enrolled = [
            locks.enrol(
                session, state.box, NewLock(f"door-{i}", "127.0.0.1", 5684 + i), actor=actor
            )
            for i in range(LOCKS)
        ]
        elements = [
            secure_elements.register(
                session, NewSecureElement(f"se-{i}", "racs.local:7443"), actor=actor
            )
            for i in range(ELEMENTS)
        ]
        secrets = {e.lock.id: e.secret for e in enrolled}
        lock_ids, element_ids = [e.lock.id for e in enrolled], [e.id for e in elements]
        now = dt.datetime.now(dt.UTC)
        start = now - dt.timedelta(seconds=n_keys)
        batch: list[dict[str, Any]] = []
        batch_key_id = None  # one key id, for the key_id filter
        for i in range(n_keys):
            lock_id = lock_ids[i % LOCKS]
            expired = rng.random() < 0.02
            not_after = int(now.timestamp()) + (-3600 if expired else 86400 * 365)
            claims, minted = mint_key(secrets[lock_id], not_after=not_after, rights=Rights.OPEN)
            issued = start + dt.timedelta(seconds=i)
            batch_key_id = batch_key_id or claims.key_id_hex
            batch.append(
                {
                    "id": uuid.uuid4(),
                    "lock_id": lock_id,
                    "secure_element_id": element_ids[rng.randrange(ELEMENTS)],
                    "key_id": claims.key_id_hex,
                    "identity": minted.identity.decode(),
                    "label": f"team-{rng.randrange(LABELS)}",
                    "rights": int(claims.rights),
                    "not_before": 0,
                    "not_after": not_after,
                    "weekdays": 0x7F,
                    "window_start": 0,
                    "window_end": 1440,
                    "max_uses": 0,
                    "issued_at": issued,
                    "revoked_at": issued if rng.random() < 0.02 else None,
                }
            )
            if len(batch) == 5000:
                session.execute(insert(Key), batch)
                batch.clear()
        if batch:
            session.execute(insert(Key), batch)
        session.commit()
        # What autovacuum (PostgreSQL) or a periodic ANALYZE would have done by now.
        session.execute(text("ANALYZE"))
        session.commit()
        _, token = tokens.create(session, tokens.Role.ADMIN, "bench")
    key_id = batch_key_id or ""
    return {"token": token, "locks": lock_ids, "elements": element_ids, "key_id": key_id}


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def bench(url: str, n_keys: int, n_issue: int, n_lists: int) -> dict[str, float]:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = Settings(
        master_key=MasterKey.generate(), database_url=url, worker=WorkerSettings(enabled=False)
    )
    app = create_app(settings)
    results: dict[str, float] = {}
    with TestClient(app) as client:
        t0 = time.perf_counter()
        data = seed(app, n_keys)
        results["seed_s"] = time.perf_counter() - t0
        headers = {"Authorization": f"Bearer {data['token']}"}

        def get(params: dict[str, Any]) -> dict[str, Any]:
            response = client.get("/keys", params=params, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        lock0, se0 = str(data["locks"][0]), str(data["elements"][0])
        body = {"lock_id": lock0, "secure_element_id": se0, "label": "bench"}

        def issue() -> None:
            response = client.post("/keys", json=body, headers=headers)
            assert response.status_code == 201, response.text

        issue_samples = timed(issue, n_issue)
        results["issue_median_ms"] = median_ms(issue_samples)
        results["issue_per_s"] = n_issue / sum(issue_samples)
        cases: dict[str, dict[str, Any]] = {
            "list_first_page": {"limit": 50},
            "list_by_lock": {"limit": 50, "lock_id": lock0},
            "list_by_se": {"limit": 50, "secure_element_id": se0},
            "list_by_label": {"limit": 50, "label": "team-7"},
            "list_state_active": {"limit": 50, "state": "active"},
            "list_state_revoked": {"limit": 50, "state": "revoked"},
            "list_state_expired": {"limit": 50, "state": "expired"},
            "list_by_key_id": {"limit": 50, "key_id": data["key_id"]},
        }
        for name, params in cases.items():
            results[f"{name}_ms"] = median_ms(timed(lambda p=params: get(p), n_lists))
        # The same lists without HTTP: the service layer and the database alone.
        for name, params in cases.items():
            flt = KeyFilter(
                lock_id=uuid.UUID(params["lock_id"]) if "lock_id" in params else None,
                secure_element_id=uuid.UUID(params["secure_element_id"])
                if "secure_element_id" in params
                else None,
                state=KeyState(params["state"]) if "state" in params else None,
                label=params.get("label"),
                key_id=params.get("key_id"),
            )

            def direct(flt: KeyFilter = flt) -> None:
                with app.state.elock.sessions() as session:
                    keys.list_keys(session, flt, cursor=None, limit=50)

            results[f"svc_{name.removeprefix('list_')}_ms"] = median_ms(timed(direct, n_lists))
            if name == "list_by_key_id":  # the reference: the same query without its index
                with app.state.elock.engine.begin() as connection:
                    connection.execute(text(f"DROP INDEX {KEY_ID_INDEX}"))
                results["svc_by_key_id_without_index_ms"] = median_ms(timed(direct, n_lists))
                with app.state.elock.engine.begin() as connection:
                    connection.execute(
                        text(f"CREATE INDEX {KEY_ID_INDEX} ON keys (key_id, issued_at, id)")
                    )
        cursor = None
        for _ in range(200):
            cursor = get({"limit": 50} | ({"cursor": cursor} if cursor else {}))["next_cursor"]
        deep = {"limit": 50, "cursor": cursor}
        results["list_200_pages_deep_ms"] = median_ms(timed(lambda: get(deep), n_lists))
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--issue", type=int, default=500)
    p.add_argument("--lists", type=int, default=100)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--postgres-url", help="use this server instead of a throwaway cluster")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="elock-bench-"))
            try:
                url = f"sqlite:///{directory}/bench.sqlite3"
                results["sqlite"] = bench(url, args.keys, args.issue, args.lists)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        elif args.postgres_url:
            results["postgresql"] = bench(args.postgres_url, args.keys, args.issue, args.lists)
        else:
            initdb = find_bin("initdb")
            if initdb is None:
                print("PostgreSQL is not installed (scripts/install.sh)", file=sys.stderr)
                return 2
            cluster = PgCluster.start(initdb)
            try:
                url = cluster.create_database("elock_bench")
                results["postgresql"] = bench(url, args.keys, args.issue, args.lists)
            finally:
                cluster.stop()
    names = list(next(iter(results.values())))
    print(f"{args.keys} keys; medians; in-process API (no network)\n")
    print(f"{'measure':28}" + "".join(f"{b:>14}" for b in results))
    for name in names:
        print(f"{name:28}" + "".join(f"{results[b][name]:14.2f}" for b in results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
