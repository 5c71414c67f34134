"""The key server as docs/deploy.md deploys it: PostgreSQL, the systemd unit's
commands, several uvicorn workers, and nginx with the shipped site in front.

Everything is real and started here: a throwaway PostgreSQL cluster, the
unit's ``ExecStartPre``/``ExecStart`` lines (with ``--workers 2``) in a
systemd-like environment, and nginx in the foreground under a private prefix
on a free port, so a system nginx (Debian starts one on install) is never
touched. Clients speak HTTPS to nginx only, verified against a throwaway CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import time
import tomllib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import make_url

from elock_common import LockSecret
from elock_common.pki_profile import make_ca
from elock_testkit.liveserver import Process, free_tcp_port
from elock_testkit.pgcluster import PgCluster, find_bin
from elock_testkit.synclock import LightLock
from elock_testkit.waiting import wait_for
from tests.conftest import require_tool
from tests.deploy import keyserver_stack as ks
from tests.key_provisioner.test_e2e_real_lock import install_lock

pytestmark = [pytest.mark.peer, pytest.mark.slow]

SERVER_NAME = "keys.example.org"
PROBLEM = "application/problem+json"


@dataclass
class Stack:
    url: str
    ca: Path
    ssl: ssl.SSLContext
    token: str
    config: Path
    keyserver_port: int
    keyserver_log: Path
    workers: set[int]
    site: str


def _nginx() -> str:
    # Debian installs nginx in /usr/sbin, which a user's PATH may lack.
    return require_tool(
        shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin") or "nginx"
    )


def _reap(pids: set[int]) -> None:
    """uvicorn's parent stops its workers; one it left behind is ended here, by its id."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def _start_keyserver(
    directory: Path, initdb: str, cleanup: contextlib.ExitStack, sync_ca: Path
) -> tuple[Path, int, str, ks.Service, set[int]]:
    """PostgreSQL with the role and database of the shipped URL, then the unit's commands.
    Locks are told to trust the proxy's private CA (``sync.ca_file``)."""
    unit = ks.read_unit()
    cluster = PgCluster.start(initdb)
    cleanup.callback(cluster.stop)
    port = free_tcp_port()
    config, values = ks.write_keyserver_config(directory, cluster, port)
    values["sync"]["ca_file"] = str(sync_ca)
    config.write_text(ks.to_toml(values))
    ks.create_role_and_database(cluster, values["keyserver"]["database_url"])
    env = ks.service_env(unit, config)
    program = str(ks.UNIT_BIN / "elock-keyserver")

    # docs/deploy.md: `elock-keyserver master-key > /etc/elock/master.key`, mode 0600
    done = ks.run(ks.local_command([program, "master-key"]), env)
    assert done.returncode == 0, done.stderr
    (directory / "master.key").write_text(done.stdout)
    (directory / "master.key").chmod(0o600)
    for _start in range(2):  # systemd runs ExecStartPre before every (re)start
        for pre in unit.exec_start_pre:
            done = ks.run(ks.local_command(pre), env)
            assert done.returncode == 0 and "database at migration" in done.stdout, done
    done = ks.run(ks.local_command([program, "token", "create", "--role", "admin"]), env)
    assert done.returncode == 0 and done.stdout.startswith("elk_"), done.stderr

    argv = ks.local_command(unit.exec_start)
    assert argv[1:3] == ["serve", "--workers"], unit.exec_start
    log = directory / "keyserver.log"
    serve = ks.Service([*argv[:3], "2", *argv[4:]], log, env)
    workers: set[int] = set()
    cleanup.callback(_reap, workers)  # after serve.stop, which is registered next
    cleanup.callback(serve.stop)
    serve.start()
    started = "Application startup complete"  # once per uvicorn worker, after its lifespan
    wait_for(lambda: serve.running() and log.read_text().count(started) == 2, 30, "2 workers")
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log.read_text()
    workers.update(int(pid) for pid in re.findall(r"server process \[(\d+)\]", log.read_text()))
    assert serve.proc is not None and len(workers) == 2
    assert workers <= ks.children(serve.proc.pid)
    return config, port, done.stdout.strip(), serve, workers


def _start_nginx(
    directory: Path, upstream: int, certs: ks.Certificates, cleanup: contextlib.ExitStack
) -> tuple[int, str]:
    """`nginx -t`, then nginx in the foreground with a private prefix and port."""
    nginx = _nginx()
    prefix = directory / "nginx"
    (prefix / "temp").mkdir(parents=True)
    listen = free_tcp_port()
    site = ks.nginx_site(listen, upstream, certs)
    conf = prefix / "nginx.conf"
    conf.write_text(ks.nginx_conf(prefix, site))
    base = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    checked = ks.run([*base, "-t"], dict(os.environ))
    assert checked.returncode == 0 and "test is successful" in checked.stderr, checked.stderr
    assert "[warn]" not in checked.stderr, checked.stderr  # e.g. a deprecated directive
    proxy = ks.Service(base, prefix / "nginx.out")
    cleanup.callback(_gone, prefix / "nginx.pid")  # checked after proxy.stop, registered next
    cleanup.callback(proxy.stop)
    proxy.start()
    wait_for(lambda: proxy.running() and _accepts(listen), 15, "nginx")
    return listen, site


def _gone(path: Path) -> None:
    assert not path.exists(), f"{path} left behind: nginx did not stop"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _nginx()  # a missing peer fails before anything starts
    initdb = require_tool(find_bin("initdb") or "initdb")
    if os.geteuid() == 0:
        require_tool("runuser")  # PostgreSQL will not run as root
    directory = tmp_path_factory.mktemp("keyserver-behind-proxy")
    with contextlib.ExitStack() as cleanup:  # stops what started, last first, even on failure
        certs = ks.make_certificates(directory, SERVER_NAME)
        config, port, token, serve, workers = _start_keyserver(directory, initdb, cleanup, certs.ca)
        listen, site = _start_nginx(directory, port, certs, cleanup)
        context = ssl.create_default_context(cafile=str(certs.ca))
        url = f"https://127.0.0.1:{listen}"
        yield Stack(url, certs.ca, context, token, config, port, serve.log, workers, site)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "workers left behind"


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.url, verify=stack.ssl, headers=headers, timeout=15) as client:
        yield client


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _enrol(api: httpx.Client, port: int) -> Any:
    body = {"name": f"door-{uuid.uuid4().hex[:8]}", "host": "127.0.0.1", "port": port}
    return _ok(api.post("/locks", json=body), 201)


def _register_se(api: httpx.Client) -> Any:
    seid = f"89331503{uuid.uuid4().int % 10**11:011d}"
    return _ok(
        api.post("/secure-elements", json={"seid": seid, "racs_server": "127.0.0.1:7443"}), 201
    )


# -- the shipped files agree with each other ---------------------------------------------


def test_shipped_files_agree() -> None:
    unit, config = ks.read_unit(), tomllib.loads(ks.KEYSERVER_TOML.read_text())
    server = config["keyserver"]
    # nginx proxies to where the key server listens, and that is loopback
    assert (
        ks.shipped_upstream() == (server["host"], server["port"]) and server["host"] == "127.0.0.1"
    )
    # Debian's PostgreSQL authenticates local sockets by peer: the role must be the unit's user.
    url = make_url(server["database_url"])
    assert url.query.get("host") == "/run/postgresql" and url.password is None
    assert url.username == unit.user, f"role {url.username} != User={unit.user} (peer auth)"
    # systemd applies ConfigurationDirectoryMode= to /etc/elock but leaves it owned by root:
    # the service's user gets in only through the bits for others.
    mode = int(unit.options["ConfigurationDirectoryMode"][-1], 8)
    assert mode & 0o001, f"ConfigurationDirectoryMode={mode:04o} shuts {unit.user} out"


# -- through nginx -----------------------------------------------------------------------


def test_tls_and_http2_from_the_shipped_site(stack: Stack) -> None:
    host, port = stack.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(stack.ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((host, int(port))) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # The OpenAPI description is the key server's unauthenticated "is it up" page.
    with httpx.Client(base_url=stack.url, verify=stack.ssl) as anonymous:
        response = anonymous.get("/openapi.json")
    assert response.status_code == 200 and response.json()["info"]["title"] == "eLock key server"


def test_admin_workflow_through_the_proxy(api: httpx.Client) -> None:
    enrolled = _enrol(api, _free_udp_port())
    lock = enrolled["lock"]
    assert enrolled["bundle"]["format"] == "elock-lock-bundle/1" and enrolled["bundle"]["secret"]
    se = _register_se(api)
    issued = _ok(
        api.post("/keys", json={"lock_id": lock["id"], "secure_element_id": se["id"]}), 201
    )
    assert issued["psk"] and issued["state"] == "active"
    listed = _ok(api.get("/keys", params={"lock_id": lock["id"]}))["items"]
    assert [key["id"] for key in listed] == [issued["id"]] and "psk" not in listed[0]
    revoked = _ok(api.post(f"/keys/{issued['id']}/revoke", json={"reason": "lost phone"}))
    assert revoked["state"] == "revoked" and revoked["revoke_reason"] == "lost phone"
    assert _ok(api.get(f"/locks/{lock['id']}"))["revocation"]["version"] == 1
    # X-Forwarded-Proto reaches uvicorn, which trusts it from loopback: links say https.
    # (Host is $host, without a port: right on 443, where the shipped site listens.)
    moved = api.get("/locks/")
    assert moved.status_code == 307 and moved.headers["location"].startswith("https://127.0.0.1")


def _keyserver_saw(stack: Stack, request_line: str) -> int:
    return stack.keyserver_log.read_text().count(f'"{request_line} HTTP/1.1"')


def test_errors_through_the_proxy(stack: Stack, api: httpx.Client) -> None:
    with httpx.Client(base_url=stack.url, verify=stack.ssl) as anonymous:
        no_token = anonymous.get("/keys")
    assert no_token.status_code == 401 and no_token.headers["content-type"] == PROBLEM
    assert no_token.headers["www-authenticate"].startswith("Bearer")

    bad = api.post("/locks", json={"name": "", "port": 0})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert bad.json()["type"] == "urn:elock:problem:validation" and bad.json()["errors"]

    # client_max_body_size: a body just under it reaches the key server (and is refused there
    # for its 60-kB name); one byte over it is refused by nginx, and the key server never sees it.
    limit = ks.body_limit(stack.site)
    head = b'{"host": "127.0.0.1", "name": "'
    under = head + b"x" * (limit - len(head) - 2) + b'"}'
    over = under + b" "
    seen = _keyserver_saw(stack, "POST /locks")
    json_type = {"content-type": "application/json"}
    large = api.post("/locks", content=under, headers=json_type)
    assert large.status_code == 422 and large.headers["content-type"] == PROBLEM, large.text
    wait_for(lambda: _keyserver_saw(stack, "POST /locks") == seen + 1, 5, "the access log")
    refused = api.post("/locks", content=over, headers=json_type)
    assert refused.status_code == 413 and refused.headers["server"].startswith("nginx")
    assert "text/html" in refused.headers["content-type"]
    # A request sent after it that does reach the key server is logged after it: once that
    # one is in the log, the refused one would be too, had nginx let it through.
    seen_gets = _keyserver_saw(stack, "GET /locks")
    assert api.get("/locks").status_code == 200
    wait_for(lambda: _keyserver_saw(stack, "GET /locks") == seen_gets + 1, 5, "the access log")
    assert _keyserver_saw(stack, "POST /locks") == seen + 1


def test_both_uvicorn_workers_serve(stack: Stack) -> None:
    """Concurrent requests open several upstream connections; the kernel hands them to both
    workers, seen in /proc as each worker process holding accepted connections."""
    served: set[int] = set()

    def one(_: int) -> int:
        headers = {"Authorization": f"Bearer {stack.token}"}
        with httpx.Client(base_url=stack.url, verify=stack.ssl, headers=headers) as client:
            return client.get("/keys").status_code

    deadline = time.monotonic() + 20
    with ThreadPoolExecutor(16) as pool:
        while served != stack.workers and time.monotonic() < deadline:
            assert set(pool.map(one, range(32))) == {200}
            served |= ks.connection_owners(stack.keyserver_port, stack.workers)
    assert served == stack.workers


def test_locks_dial_in_through_the_proxy(stack: Stack, api: httpx.Client) -> None:
    """Locks dial ``wss://.../sync/lock`` through the shipped nginx site (its Upgrade headers)
    and land on either uvicorn process; a revoke answered by one process reaches a lock on
    the other within a second (PostgreSQL LISTEN/NOTIFY)."""
    se = _register_se(api)
    url = stack.url.replace("https://", "wss://") + "/sync/lock"

    def revoke_new_key(lock_id: str) -> None:
        key = _ok(api.post("/keys", json={"lock_id": lock_id, "secure_element_id": se["id"]}), 201)
        _ok(api.post(f"/keys/{key['id']}/revoke"))

    async def run() -> None:
        locks = []
        for _ in range(6):  # enough that both processes hold some
            enrolled = _enrol(api, _free_udp_port())
            assert enrolled["bundle"]["sync_url"] == "wss://keys.example.org/sync/lock"
            secret = LockSecret.from_text(enrolled["bundle"]["secret"])
            lock = LightLock(enrolled["lock"]["id"], secret)
            await lock.connect(url, ssl=stack.ssl)
            locks.append(lock)
        try:
            await asyncio.gather(*(asyncio.wait_for(lock.synced.wait(), 10) for lock in locks))
            holders = ks.connection_owners(stack.keyserver_port, stack.workers)
            assert holders == stack.workers, holders
            for lock in locks:
                await asyncio.to_thread(revoke_new_key, lock.lock_id)
                answered = time.monotonic()
                await lock.in_sync(1, 1.0)
                assert lock.arrivals[1] - answered < 1.0
        finally:
            for lock in locks:
                await lock.close()

    asyncio.run(run())


def test_a_real_lock_dials_through_the_proxy_trusting_the_ca_its_bundle_names(
    stack: Stack, api: httpx.Client, tmp_path: Path
) -> None:
    """``elock-lock init --bundle`` installs the CA the key server names (``sync.ca_file``):
    the lock reaches the key server behind a private CA with nothing else configured, and
    the same lock trusting another CA refuses the server and says why."""
    enrolled = _enrol(api, _free_udp_port())
    lock_id = enrolled["lock"]["id"]
    assert enrolled["bundle"]["sync_ca"] == stack.ca.read_text()
    config = install_lock(enrolled["bundle"], tmp_path / "lock")
    here = stack.url.replace("https://", "wss://") + "/sync/lock"  # keys.example.org is not ours
    text = config.read_text().replace("wss://keys.example.org/sync/lock", here)
    config.write_text(text.replace("start_wait_seconds = 5.0", "start_wait_seconds = 1.0"))
    lock = Process(["lock_server.cli", "serve", "--config", str(config)], tmp_path / "lock.log",
                   "listening on")  # fmt: skip
    lock.start()
    try:
        wait_for(lambda: _ok(api.get(f"/locks/{lock_id}"))["connected"], 15, "the lock connected")
    finally:
        lock.stop()

    other, _ = make_ca("Someone else's CA", now=time.time())
    (tmp_path / "lock" / "sync-ca.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    lock.start()
    try:
        status = tmp_path / "lock" / "var" / "sync-status.json"

        def refused() -> bool:
            error = json.loads(status.read_text()).get("last_error") or ""
            return "certificate is not trusted by the CA in sync.ca_file" in error

        wait_for(refused, 15, "the lock refusing a server its CA did not sign")
        assert not _ok(api.get(f"/locks/{lock_id}"))["connected"]
    finally:
        lock.stop()


def test_the_card_sync_websocket_passes_through_the_shipped_site(stack: Stack) -> None:
    """A phone dials ``wss://…/v1/card-sync`` through nginx: the upgrade reaches the key server.

    This stack has no ``[push]`` credentials, so the key server refuses at once, before any
    hello; that the refusal arrives, as a WebSocket frame over TLS, is what is checked.
    """
    from websockets.sync.client import connect

    from elock_common import card_sync as wire

    url = stack.url.replace("https://", "wss://") + wire.PATH
    with connect(url, ssl=stack.ssl, server_hostname=SERVER_NAME, open_timeout=15) as ws:
        answer = wire.decode_server_message(ws.recv(timeout=15))
    assert answer == wire.Refused("this key server does not provision cards")
