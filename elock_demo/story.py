"""The story: a lock enrolled, a key pushed into a card through double TLS, open, revoke, refused.

Every part is the real program: ``elock pki init``, ``elock-keyserver``, ``elock-lock``,
``elock-se serve`` behind pcscd, ``racs-server`` and ``coap-open``. The key
server's worker puts the key into the card through the RACS server inside a
TLS session that ends in the card (TLS#2); the demo then reads the RACS
server's APDU log to show that nothing of the key crossed it in clear. The
lock dials the key server (``/sync/lock``) and keeps that connection, as it
would from behind a home router: the revocation, the time and the lock's audit
rows all travel over it, and nothing ever connects to the lock but its users.

Then the other path: a card in a "phone" that nothing can dial (carrier NAT).
It names its key server; ``coap-open --sync`` dials there and relays TLS#2
while the key server installs the phone's key, and after a revoke deletes it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from elock_demo import setup
from elock_demo.pcscd import VPCD_READER
from elock_demo.services import (
    KeyServerApi,
    Running,
    Service,
    StoryBrokenError,
    free_port,
    run,
    run_status,
)

SEID = "demo-card-1"
PHONE_SEID = "demo-phone-1"


class Teller(Protocol):
    def step(self, title: str, action: Any) -> str: ...


def _wait(condition: Callable[[], Any], timeout: float, failure: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise StoryBrokenError(failure())
        time.sleep(0.05)
    return value


class Demo:
    """The whole system on loopback, one method per step of the story.

    Each step starts or drives real programs and returns the line the demo prints;
    what a later step needs (the lock, the card, the key) is kept on ``self``.
    """

    def __init__(self, work: Path, services: list[Running], *, detach: bool) -> None:
        self.work, self.services, self.detach = work, services, detach
        self.ks_dir, self.lock_dir = work / "keyserver", work / "lock"
        self.racs_dir, self.card, self.pki_dir = work / "racs", work / "card.json", work / "pki"
        self.phone_card = work / "phone-card.json"
        self.phone_se: dict[str, Any] = {}
        self.phone_key: dict[str, Any] = {}
        self.api = KeyServerApi(f"http://127.0.0.1:{free_port(1)}", "")
        self.lock: dict[str, Any] = {}
        self.se: dict[str, Any] = {}
        self.key: dict[str, Any] = {}
        self.uri = ""
        self.apdu_log = self.racs_dir / "apdus.log"

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        told = [
            ("Make the PKI with elock pki init", self.make_pki),
            ("Start the key server (FastAPI, SQLite, background worker)", self.start_keyserver),
            ("Enrol a lock through the API and install its bundle", self.enrol),
            ("Start the lock: it dials the key server and keeps the connection", self.start_lock),
            ("Personalize a secure element and put it behind pcscd", self.card_behind_pcscd),
            ("Start the RACS server and register the card with the key server", self.start_racs),
            ("Issue a key; the key server pushes it into the card (RACS + TLS#2)", self.issue),
            ("Check what the RACS server saw", self.nothing_in_clear),
            ("Open the door with coap-open (card behind pcscd)", self.open_door),
            (
                "Revoke the key through the API: the list goes over the lock's connection",
                self.revoke,
            ),
            ("Try the revoked key", self.refused),
            ("Read the lock's audit log, on the lock and as it reached the key server", self.audit),
            ("Personalize a card for a phone behind NAT; it names its key server", self.phone),
            ("Issue a key for the phone: it waits for the phone to dial in", self.phone_issue),
            (
                "The phone syncs (coap-open --sync): TLS#2 over the phone's own connection",
                self.phone_sync,
            ),
            ("Open the door from the phone", self.phone_open),
            ("Revoke the phone's key; its next sync deletes the container", self.phone_revoke),
        ]
        if self.detach:
            told.append(("Issue another key for you to try (--keep)", self.spare_key))
        return told

    def _service(self, service: Service) -> str:
        self.services.append(service)
        return service.start(detach=self.detach)

    def make_pki(self) -> str:
        run("elock_demo.cli", "pki", "init", "--dir", str(self.pki_dir))
        made = len(list(self.pki_dir.glob("*.pem")))
        return (f"{made} certificates (3 of them CAs) in {self.pki_dir}, P-256, "
                "private keys mode 0600")  # fmt: skip

    def start_keyserver(self) -> str:
        api, ks_dir = self.api, self.ks_dir
        sync_url = api.url.replace("http://", "ws://") + "/sync/lock"
        config = setup.keyserver_config(ks_dir, self.pki_dir, sync_url)
        cli = ["key_provisioner.cli", "--config", str(config)]
        run(*cli, "migrate")
        api.token = run(*cli, "token", "create", "--role", "admin", "--name", "demo").strip()
        (ks_dir / "admin.token").write_text(api.token + "\n")
        os.chmod(ks_dir / "admin.token", 0o600)
        port = api.url.rsplit(":", 1)[1]
        # uvicorn logs "Application startup complete" before it binds; this line comes after
        service = Service("key server", [*cli, "serve", "--port", port], ks_dir / "keyserver.log",
                          "Uvicorn running on")  # fmt: skip
        return self._service(service) + f" on {api.url} (SQLite, worker, push credentials)"

    def enrol(self) -> str:
        port = free_port()
        body = {"name": "front-door", "host": "127.0.0.1", "port": port}
        enrolled = self.api.call("POST", "/locks", body)
        self.lock = enrolled["lock"]
        setup.install_lock(self.lock_dir, enrolled["bundle"], self.work / "bundle.json")
        self.uri = f"coaps://127.0.0.1:{port}/lock"
        return f"lock {self.lock['id'][:8]}... enrolled; bundle installed with elock-lock init"

    def start_lock(self) -> str:
        serve = ["lock_server.cli", "serve", "--config", str(self.lock_dir / "lock.toml")]
        started = self._service(Service("lock", serve, self.lock_dir / "lock.log", "listening on"))
        lock_id = self.lock["id"]
        shown = _wait(lambda: (s := self.api.call("GET", f"/locks/{lock_id}"))["connected"] and s,
                      10, lambda: "the lock did not connect to the key server")  # fmt: skip
        return (started + f", {self.uri} (DTLS 1.2 PSK, simulated relay); connected to the key"
                f" server's /sync/lock, clock {shown['clock_offset_seconds']:+.3f} s off it,"
                " no port opened for the key server")  # fmt: skip

    def card_behind_pcscd(self) -> str:
        pki_dir = self.pki_dir
        run("firmware.virtual.cli", "personalize", "--card", str(self.card), "--seid", SEID,
            "--issuer-cert", str(pki_dir / "se-issuer-ca.pem"),
            "--issuer-key", str(pki_dir / "se-issuer-ca.key"),
            "--key-server-ca", str(pki_dir / "key-server-ca.pem"))  # fmt: skip
        daemon = setup.start_pcscd()
        self.services.append(daemon)
        serve = ["firmware.virtual.cli", "serve", "--card", str(self.card)]
        self._service(Service("virtual card", serve, self.work / "card.log", "serving"))
        setup.wait_for_reader()
        return (f"key pair made in the card, certified for {SEID}; in {VPCD_READER!r} of "
                f"{daemon.describe()}")  # fmt: skip

    def start_racs(self) -> str:
        port = free_port(1)
        config = setup.racs_config(self.racs_dir, self.pki_dir, SEID, VPCD_READER, port)
        args = ["racs.cli", "--config", str(config), "--log-apdus", str(self.apdu_log),
                "--ready-line", "racs-server ready on {port}"]  # fmt: skip
        started = self._service(
            Service("RACS server", args, self.racs_dir / "racs.log", "racs-server ready")
        )
        body = {"seid": SEID, "racs_server": f"127.0.0.1:{port}", "label": "demo phone"}
        self.se = self.api.call("POST", "/secure-elements", body)
        return f"{started} on 127.0.0.1:{port} (TLS#1, client certificates); card registered"

    def issue_and_push(self, label: str) -> Any:
        api = self.api
        body = {"lock_id": self.lock["id"], "secure_element_id": self.se["id"], "label": label}
        key = api.call("POST", "/keys", body)

        def installed() -> Any:
            push = api.call("GET", f"/keys/{key['id']}")["push"]
            return push if push["state"] == "installed" else None

        def why() -> str:
            return f"the key never reached the card: {api.call('GET', '/keys/' + key['id'])}"

        _wait(installed, 30, why)
        return key

    def issue(self) -> str:
        began = time.monotonic()
        key = self.key = self.issue_and_push("Front door")
        took = (time.monotonic() - began) * 1000
        records = setup.tls2_apdus(self.apdu_log)
        return (f"key {key['key_id']} issued and installed in the card {took:.0f} ms later: "
                f"{records} TLS#2 APDUs through RACS")  # fmt: skip

    def nothing_in_clear(self) -> str:
        key = self.key
        fields = {"the PSK": key["psk"], "the identity": key["identity"], "the label": "Front door"}
        leaked = setup.clear_in_log(self.apdu_log, fields)
        if leaked:
            raise StoryBrokenError(f"the RACS APDU log shows {', '.join(leaked)} in clear")
        return "the RACS server's APDU log holds no byte of the PSK, identity or label in clear"

    def open_door(self) -> str:
        status, out = run_status("key_client.cli", "--reader", VPCD_READER, "--json", "Front door")
        if status != 0 or out.get("status") != "opened":
            raise StoryBrokenError(f"the lock did not open: {out}")
        return (f"opened in {out['elapsed_ms']} ms, {out['apdu_exchanges']} APDU exchanges: "
                "the card ran DTLS and CoAP, the host only carried datagrams")  # fmt: skip

    def revoke(self) -> str:
        api, key_id, lock_id = self.api, self.key["id"], self.lock["id"]
        api.call("POST", f"/keys/{key_id}/revoke", {"reason": "phone lost"})

        def done() -> Any:
            lock = api.call("GET", f"/locks/{lock_id}")
            push = api.call("GET", f"/keys/{key_id}")["push"]
            return lock if lock["revocation"]["in_sync"] and push["state"] == "removed" else None

        def why() -> str:
            lock = api.call("GET", f"/locks/{lock_id}")
            return f"revocation {lock['revocation']}, push {api.call('GET', f'/keys/{key_id}')}"

        lock = _wait(done, 15, why)
        version = lock["revocation"]["confirmed_version"]
        return (f"the lock confirmed revocation list version {version}, sent over the connection"
                " it dialled; the key server deleted the container from the card")  # fmt: skip

    def refused(self) -> str:
        status, out = run_status("key_client.cli", "--reader", VPCD_READER, "--json", "Front door")
        if status != 6:
            raise StoryBrokenError(f"the card still has the key: {out}")
        answer = setup.open_with_copy(self.key)
        if "key revoked" not in answer:
            raise StoryBrokenError(f"the lock did not refuse a copy of the key: {answer}")
        return (f"coap-open exits 6 ({out['message']}); a copy of the key (identity and PSK) is "
                f"refused by the lock: {answer.strip()}")  # fmt: skip

    def audit(self) -> str:
        config_file = str(self.lock_dir / "lock.toml")
        status = json.loads(run("lock_server.cli", "status", "--config", config_file, "--json"))
        rows = [r for r in status["recent_audit"] if r["action"] == "open"]
        lock_id = self.lock["id"]

        def uploaded() -> Any:
            items = self.api.call("GET", f"/locks/{lock_id}/audit")["items"]
            opens = [r for r in items if r["action"] == "open"]
            return opens if len(opens) >= len(rows) else None

        opens = _wait(uploaded, 10, lambda: "the lock's audit rows did not reach the key server")
        told = "; ".join(f"{r['outcome']} ({r['reason']})" for r in rows)
        return f"the lock's audit log: {told}; the key server has the {len(opens)} it uploaded"

    def phone(self) -> str:
        pki_dir = self.pki_dir
        run("firmware.virtual.cli", "personalize", "--card", str(self.phone_card),
            "--seid", PHONE_SEID, "--issuer-cert", str(pki_dir / "se-issuer-ca.pem"),
            "--issuer-key", str(pki_dir / "se-issuer-ca.key"),
            "--key-server-ca", str(pki_dir / "key-server-ca.pem"),
            "--key-server", self.api.url)  # fmt: skip
        body = {"seid": PHONE_SEID, "label": "demo phone behind NAT"}  # no RACS server
        self.phone_se = self.api.call("POST", "/secure-elements", body)
        return (f"card {PHONE_SEID} knows {self.api.url}; registered with delivery "
                f"{self.phone_se['delivery']!r} (no RACS server)")  # fmt: skip

    def phone_issue(self) -> str:
        body = {"lock_id": self.lock["id"], "secure_element_id": self.phone_se["id"],
                "label": "Phone door"}  # fmt: skip
        self.phone_key = self.api.call("POST", "/keys", body)
        push = self.api.call("GET", f"/keys/{self.phone_key['id']}")["push"]
        key_id = self.phone_key["key_id"]
        return f"key {key_id} issued; push {push['state']!r} until the phone syncs"

    def _sync(self, expect: str) -> dict[str, Any]:
        status, out = run_status("key_client.cli", "--sync", "--card", str(self.phone_card),
                                 "--json")  # fmt: skip
        push = self.api.call("GET", f"/keys/{self.phone_key['id']}")["push"]
        if status != 0 or push["state"] != expect:
            raise StoryBrokenError(f"the sync did not leave the key {expect}: {out}, {push}")
        return out

    def phone_sync(self) -> str:
        out = self._sync("installed")
        return (f"{out['message']}; the key server checked the card and ran TLS#2 through the "
                "phone, which saw ciphertext only: push 'installed'")  # fmt: skip

    def phone_open(self) -> str:
        card = str(self.phone_card)
        status, out = run_status("key_client.cli", "--card", card, "--json", "Phone door")
        if status != 0 or out.get("status") != "opened":
            raise StoryBrokenError(f"the phone's key did not open: {out}")
        return f"opened in {out['elapsed_ms']} ms with the key the phone took by itself"

    def phone_revoke(self) -> str:
        key_id = self.phone_key["id"]
        self.api.call("POST", f"/keys/{key_id}/revoke", {"reason": "phone replaced"})
        waiting = self.api.call("GET", f"/keys/{key_id}")["push"]["state"]
        out = self._sync("removed")
        return f"push {waiting!r} until the phone synced: {out['message']}; push 'removed'"

    def spare_key(self) -> str:
        key = self.issue_and_push("Back door")
        return f"key {key['key_id']} 'Back door' is in the card for the phone app"


def tell(story: Teller, work: Path, services: list[Running], *, detach: bool) -> dict[str, str]:
    demo = Demo(work, services, detach=detach)
    for title, step in demo.steps():
        story.step(title, step)
    return {"api": demo.api.url, "token_file": str(demo.ks_dir / "admin.token"),
            "reader": VPCD_READER}  # fmt: skip
