"""The key server pushes keys into a card through a real RACS server, inside TLS#2.

Real parts: the key server's API and worker (in process, on SQLite and on
PostgreSQL), a RACS server in its own thread whose card is the real applet in
process, and a real lock process enrolled through the API. A key issued
through the API becomes ``installed``, is in the card's LIST, and opens the
lock from the card (the phone's side: ``AppletChannel`` + ``open_door``);
revoked, its container is deleted (``removed``) and the lock refuses the key.
An untrusted card gets nothing and the key is ``failed`` with why; a RACS
server that is down leaves the key pending, retried, until it is back.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from elock_common import pki
from elock_common.container import KeyContainer
from elock_testkit.liveserver import free_tcp_port, run_module
from elock_testkit.lockproc import LockProcess, coap, free_udp_port
from elock_testkit.push_harness import Racs, make_card, make_card_with, start_racs
from elock_testkit.waiting import wait_for
from firmware.applet import Applet
from firmware.store import Eeprom, Store
from key_client.cards import AppletChannel
from key_client.carrier import open_door
from key_client.errors import RefusedError
from key_provisioner.core.config import PushSettings, Settings, WorkerSettings
from key_provisioner.core.crypto import MasterKey
from tests.key_provisioner.conftest import FAST_WORKER, Api

pytestmark = [pytest.mark.peer, pytest.mark.slow]

SEID = "card-0001"
T = TypeVar("T")


@pytest.fixture(scope="module")
def se_pki(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiPaths:
    return pki.init_pki(tmp_path_factory.mktemp("se-pki"))


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return FAST_WORKER


@pytest.fixture
def settings(database_url: str, worker_settings: WorkerSettings, se_pki: pki.PkiPaths) -> Settings:
    user = se_pki.racs_users["keyserver"]
    push = PushSettings(
        racs_client_cert=user.cert,
        racs_client_key=user.key,
        racs_ca=se_pki.racs_ca.cert,
        tls2_cert=se_pki.key_server.cert,
        tls2_key=se_pki.key_server.key,
        se_issuer_ca=se_pki.se_issuer_ca.cert,
        timeout=10,
    )
    return Settings(
        master_key=MasterKey.generate(),
        database_url=database_url,
        worker=worker_settings,
        push=push,
    )


class RacsThread:
    """An event loop in a thread for the RACS server: the test and the API block theirs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[Racs] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(
        self,
        paths: pki.PkiPaths,
        cards: dict[str, Applet],
        apdu_log: Path | None = None,
        port: int = 0,
    ) -> Racs:
        racs = self.run(start_racs(paths, cards, apdu_log, port=port))
        self.servers.append(racs)
        return racs

    def stop(self, racs: Racs) -> None:
        self.run(racs.close())  # the server and its APDU log
        self.servers.remove(racs)

    def close(self) -> None:
        for racs in list(self.servers):
            self.stop(racs)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def __enter__(self) -> RacsThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def racs_thread() -> Iterator[RacsThread]:
    with RacsThread() as thread:
        yield thread


@dataclass
class EnrolledLock:
    id: str
    process: LockProcess


@pytest.fixture
def lock(admin: Api, tmp_path: Path) -> Iterator[EnrolledLock]:
    """A real lock, enrolled through the API and installed from its bundle."""
    port = free_udp_port()
    enrolled = admin.enrol("push-door", port=port)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(enrolled["bundle"]))
    directory = tmp_path / "lock"
    run_module("lock_server.cli", "init", "--dir", str(directory), "--bundle", str(bundle))
    bundle.unlink()
    process = LockProcess(directory, port)
    text = process.config.read_text().replace("open_seconds = 5.0", "open_seconds = 0.2")
    process.config.write_text(text)
    process.start()
    try:
        yield EnrolledLock(enrolled["lock"]["id"], process)
    finally:
        process.stop()


def push_of(admin: Api, key: dict[str, Any]) -> dict[str, Any]:
    return admin.ok("GET", f"/keys/{key['id']}")["push"]  # type: ignore[no-any-return]


def wait_push(admin: Api, key: dict[str, Any], state: str, timeout: float = 20.0) -> Any:
    def reached() -> dict[str, Any] | None:
        push = push_of(admin, key)
        return push if push["state"] == state else None

    try:
        return wait_for(reached, timeout, f"push state {state!r}")
    except AssertionError:
        raise AssertionError(f"push of the key is {push_of(admin, key)}, not {state!r}") from None


def register(admin: Api, seid: str, port: int) -> Any:
    body = {"seid": seid, "racs_server": f"127.0.0.1:{port}", "label": "phone"}
    return admin.ok("POST", "/secure-elements", 201, json=body)


def card_list(applet: Applet) -> list[tuple[int, str, str]]:
    return [(k.container_id, k.label, k.uri) for k in AppletChannel(applet.process).keys()]


def test_issue_installs_opens_and_revoke_removes(
    admin: Api, lock: EnrolledLock, racs_thread: RacsThread, se_pki: pki.PkiPaths, tmp_path: Path
) -> None:
    applet = make_card(se_pki, SEID)
    racs = racs_thread.start(se_pki, {SEID: applet}, tmp_path / "apdus.log")
    se = register(admin, SEID, racs.port)
    key = admin.issue(lock.id, se["id"], label="Front door")
    assert key["push"]["state"] == "pending" and key["push"]["last_error"] is None

    push = wait_push(admin, key, "installed")
    assert push["attempts"] == 0 and push["last_error"] is None
    assert push["next_attempt_at"] is None and push["container_id"] == 1
    shown = admin.ok("GET", f"/keys/{key['id']}")
    assert shown["pushed_at"] is not None
    assert "psk" not in shown
    # In the card's LIST: through RACS and TLS#2 (the key server's way) and on the card.
    listed = asyncio.run(racs.pusher().list_containers(SEID))
    assert [(c.container_id, c.identity) for c in listed] == [(1, key["identity"].encode())]
    assert card_list(applet) == [(1, "Front door", key["uri"])]
    assert applet.keyring.get(1).psk == key["psk"].encode()  # the PSK the API handed out
    # No PSK byte crossed the RACS server in clear.
    log_text = (tmp_path / "apdus.log").read_text().upper()
    assert log_text.count("00D8") >= 5  # TLS#2 records did go through this RACS server
    assert key["psk"].encode().hex().upper() not in log_text
    assert key["psk"].upper() not in log_text

    # The phone opens the real lock with the container the key server pushed.
    channel = AppletChannel(applet.process)
    (info,) = channel.keys()
    outcome = asyncio.run(open_door(channel, info, timeout=15))
    assert outcome.code == "2.04"
    assert "on" in lock.process.relay_events()

    # Issuing again: the next container id on the same card; both installed.
    second = admin.issue(lock.id, se["id"], label="Back door")
    assert wait_push(admin, second, "installed")["container_id"] == 2

    # Revoke: the container leaves the card, the lock refuses the key.
    revoked = admin.ok("POST", f"/keys/{key['id']}/revoke", json={"reason": "phone lost"})
    assert revoked["push"]["state"] in ("removing", "removed")
    push = wait_push(admin, key, "removed")
    assert push["removed_at"] is not None and push["last_error"] is None
    assert [c[0] for c in card_list(applet)] == [2]
    assert wait_push(admin, second, "installed")  # the other key is untouched
    # The key server's list reaches the lock: the in-process key server here serves no
    # /sync/lock for the lock to dial, so an installer's admin key carries the same list
    # (test_e2e_real_lock.py and tests/network run delivery over the lock's own connection).
    listed = admin.ok("GET", f"/locks/{lock.id}")["revocation"]["version"]
    installer = lock.process.mint("--admin", "--no-open")
    body = json.dumps({"version": listed, "revoked": [key["key_id"]]})
    where = lock.process.uri.replace("/lock", "/admin/revocations")
    answer = coap("coap-client-openssl", "post", installer, where, payload=body)
    assert f'"version":{listed}' in answer, answer
    # A copy of the key kept elsewhere (identity and PSK) is refused by the lock.
    spare = Applet(Store(Eeprom()))
    uri = key["uri"]
    spare.keyring.put(KeyContainer(1, "copy", uri, key["identity"].encode(), key["psk"].encode()))
    spare_channel = AppletChannel(spare.process)
    (copy_info,) = spare_channel.keys()
    with pytest.raises(RefusedError) as refused:
        asyncio.run(open_door(spare_channel, copy_info, timeout=15))
    assert "revoked" in str(refused.value)
    # Revoking again changes nothing.
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    assert push_of(admin, key)["state"] == "removed"


def _self_signed(key: ec.EllipticCurvePrivateKey, seid: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, seid)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(pki.seid_uri(seid))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("kind", "why"), [("self-signed", "self-signed"), ("another SEID", "does not name SEID")]
)
def test_an_untrusted_card_fails_with_why_and_gets_nothing(
    admin: Api,
    lock: EnrolledLock,
    racs_thread: RacsThread,
    se_pki: pki.PkiPaths,
    kind: str,
    why: str,
) -> None:
    if kind == "another SEID":
        applet = make_card(se_pki, SEID, cert_seid="card-0002")
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        applet = make_card_with(se_pki, private, _self_signed(private, SEID))
    racs = racs_thread.start(se_pki, {SEID: applet})
    se = register(admin, SEID, racs.port)
    key = admin.issue(lock.id, se["id"])
    push = wait_push(admin, key, "failed")
    assert why in push["last_error"] and SEID in push["last_error"]
    assert push["next_attempt_at"] is None and push["attempts"] == 1
    seen = racs.cards[SEID].seen
    assert not any(apdu[:2] == b"\x00\xd8" for apdu in seen)  # not even a ClientHello
    assert applet.keyring.all() == []
    time.sleep(1.5)  # past retry_max: a permanent failure is not retried
    assert push_of(admin, key) == push
    # Revoked, it is simply removed: nothing of it is on the card.
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    assert push_of(admin, key)["state"] == "removed"
    assert applet.keyring.all() == []


def test_racs_down_stays_pending_and_installs_once_back(
    admin: Api, lock: EnrolledLock, racs_thread: RacsThread, se_pki: pki.PkiPaths
) -> None:
    port = free_tcp_port()
    se = register(admin, SEID, port)  # nothing listens there yet
    key = admin.issue(lock.id, se["id"])

    def retrying() -> dict[str, Any] | None:
        push = push_of(admin, key)
        return push if push["attempts"] >= 2 else None

    push = wait_for(retrying, 15, "two failed tries")
    assert push["state"] == "pending"
    assert "cannot reach RACS" in push["last_error"]
    assert push["next_attempt_at"] is not None
    applet = make_card(se_pki, SEID)
    racs_thread.start(se_pki, {SEID: applet}, port=port)
    push = wait_push(admin, key, "installed")
    assert push["attempts"] == 0 and push["last_error"] is None
    assert [k.identity for k in applet.keyring.all()] == [key["identity"].encode()]


def test_without_push_settings_keys_wait_with_the_reason(
    database_url: str, worker_settings: WorkerSettings
) -> None:
    from fastapi.testclient import TestClient

    from key_provisioner.api.main import create_app
    from tests.key_provisioner.conftest import make_token

    settings = Settings(
        master_key=MasterKey.generate(), database_url=database_url, worker=worker_settings
    )
    with TestClient(create_app(settings)) as client:
        api = Api(client, make_token(client, "admin"))
        lock_id = api.enrol("no-push")["lock"]["id"]
        key = api.issue(lock_id, api.register_se()["id"])
        time.sleep(0.5)  # the worker runs, but has nothing to push with
        push = push_of(api, key)
        assert push["state"] == "pending" and "not configured" in push["last_error"]
        api.ok("POST", f"/keys/{key['id']}/revoke")
        assert push_of(api, key)["state"] == "removed"
