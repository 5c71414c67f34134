"""Issue #7's whole path, every part a real program as an operator runs it.

``elock pki init`` makes the PKI; ``elock-se personalize --seid`` makes a card
file whose key pair is made in the card and certified by the issuer CA;
``elock-se serve`` puts it behind the real pcscd (vpcd); ``racs-server``
serves that reader with a log of every APDU; ``elock-keyserver`` (migrate,
token create, serve with its worker and ``[push]``) and ``elock-lock`` run as
subprocesses. Through the REST API a lock is enrolled and a key issued; the
worker pushes its container through RACS and TLS#2; ``coap-open --reader``
opens the lock with it through pcscd; revoked, the container leaves the card
and the lock refuses the key. pcscd's vpcd port is shared: one at a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from elock_common import pki
from elock_demo import setup
from elock_demo.services import KeyServerApi
from elock_testkit.cardproc import ServedCard, coap_open, env, personalize_with_identity
from elock_testkit.liveserver import start_demo_keyserver
from elock_testkit.lockproc import Key, LockProcess, coap, free_udp_port
from elock_testkit.pcsc import READER
from elock_testkit.racsproc import RacsProcess
from elock_testkit.waiting import wait_for

pytestmark = [pytest.mark.peer, pytest.mark.slow]
SEID = "card-e2e-07"


def elock_pki_init(directory: Path) -> pki.PkiPaths:
    """``elock pki init``, then the paths it promises (the same layout as ``init_pki``)."""
    command = [sys.executable, "-m", "elock_demo.cli", "pki", "init", "--dir", str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "se-issuer-ca.pem" in done.stdout
    key_files = sorted(directory.glob("*.key"))
    assert len(key_files) == 6 and all(p.stat().st_mode & 0o777 == 0o600 for p in key_files)
    return pki.pki_paths(directory)


@dataclass
class System:
    api: KeyServerApi
    racs: RacsProcess
    lock: LockProcess
    lock_id: str
    se_id: str


def served_card_and_racs(
    stack: ExitStack,
    directory: Path,
    paths: pki.PkiPaths,
    seid: str,
    *,
    metrics_port: int | None = None,
) -> RacsProcess:
    """A card personalized with ``seid`` served behind pcscd, and racs-server for its reader;
    both stopped when ``stack`` closes."""
    card = directory / "card.json"
    personalize_with_identity(card, paths, seid)
    stack.callback(ServedCard(card).stop)
    racs = RacsProcess(paths, directory / "racs", seid, metrics_port=metrics_port)
    stack.callback(racs.stop)
    return racs


def enrolled_lock(
    stack: ExitStack, api: KeyServerApi, directory: Path, name: str, *, config: str = ""
) -> tuple[LockProcess, dict[str, Any]]:
    """A lock enrolled through the API and installed from its bundle (``config`` appended to
    its lock.toml), running until ``stack`` closes; the lock and what enrolment answered."""
    port = free_udp_port()
    enrolled = api.call("POST", "/locks", {"name": name, "host": "127.0.0.1", "port": port})
    lock = LockProcess(directory / "lock", port)
    setup.install_lock(lock.directory, enrolled["bundle"], directory / "bundle.json")
    with lock.config.open("a") as f:
        f.write(config)
    lock.start()
    stack.callback(lock.stop)
    return lock, enrolled


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    paths = elock_pki_init(tmp_path / "pki")
    with ExitStack() as stack:  # every stop runs, whatever one of them raised
        racs = served_card_and_racs(stack, tmp_path, paths, SEID)
        api, keyserver, _ = start_demo_keyserver(tmp_path / "keyserver", paths.directory)
        stack.callback(keyserver.stop)
        lock, enrolled = enrolled_lock(stack, api, tmp_path, "e2e")
        body = {"seid": SEID, "racs_server": f"127.0.0.1:{racs.port}", "label": "e2e phone"}
        se = api.call("POST", "/secure-elements", body)
        yield System(api, racs, lock, enrolled["lock"]["id"], se["id"])


def push_state(api: KeyServerApi, key_id: str, state: str) -> Callable[[], Any]:
    def reached() -> Any:
        push = api.call("GET", f"/keys/{key_id}")["push"]
        assert push["state"] != "failed", push
        return push if push["state"] == state else None

    return reached


def test_issue_push_open_revoke_refuse(system: System) -> None:
    api = system.api
    body = {"lock_id": system.lock_id, "secure_element_id": system.se_id, "label": "Front door"}
    key = api.call("POST", "/keys", body)
    assert key["push"]["state"] == "pending"
    push = wait_for(push_state(api, key["id"], "installed"), 30, "push installed")
    assert push["container_id"] == 1 and push["last_error"] is None

    # The phone's side: the card behind pcscd lists the key, never its PSK.
    status, listed, _ = coap_open("--list", "--reader", READER)
    assert status == 0, listed
    assert isinstance(listed, list) and [k["label"] for k in listed] == ["Front door"]
    assert key["psk"] not in json.dumps(listed)

    # coap-open opens the real lock with the pushed container, through pcscd.
    status, opened, _ = coap_open("Front door", "--reader", READER)
    assert status == 0 and opened["status"] == "opened", opened
    assert "on" in system.lock.relay_events()

    # The RACS server carried TLS#2 as ciphertext: no PSK, label or identity in its log.
    log = system.racs.log.read_text().upper()
    assert log.count("00D8") >= 5
    for clear in (key["psk"], key["identity"], "Front door", key["uri"]):
        assert clear.encode().hex().upper() not in log, clear
        assert clear.upper() not in log, clear

    # Revoke: the worker deletes the container and the lock confirms the revocation.
    api.call("POST", f"/keys/{key['id']}/revoke", {"reason": "phone lost"})
    wait_for(push_state(api, key["id"], "removed"), 30, "push removed")

    def lock_in_sync() -> bool:
        return bool(api.call("GET", f"/locks/{system.lock_id}")["revocation"]["in_sync"])

    wait_for(lock_in_sync, 30, "lock confirms the revocation")
    status, listed, _ = coap_open("--list", "--reader", READER)
    assert status == 0 and listed == [], listed
    status, refused, _ = coap_open("Front door", "--reader", READER)
    assert status == 6, refused  # no such key on the card any more

    # A copy of the key kept elsewhere (identity and PSK as issued) is refused by the lock.
    copy = Key(key["identity"], key["psk"], key["key_id"])
    answer = coap("coap-client-openssl", "post", copy, key["uri"])
    assert "4.01 key revoked" in answer, answer
    reasons = [row["reason"] for row in system.lock.audit() if row["action"] == "open"]
    assert reasons[-1] == "key revoked", reasons
    assert system.lock.relay_events().count("on") == 1
