"""The story: a lock enrolled, a key pushed into a card through double TLS, open, revoke, refused.

Every part is the real program: ``elock pki init``, ``elock-keyserver``, ``elock-lock``,
``elock-se serve`` behind pcscd, ``racs-server`` and ``coap-open``. The key
server's worker puts the key into the card through the RACS server inside a
TLS session that ends in the card (TLS#2); the demo then reads the RACS
server's APDU log to show that nothing of the key crossed it in clear.
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


class Teller(Protocol):
    def step(self, title: str, action: Any) -> str: ...


def _wait(condition: Callable[[], Any], timeout: float, failure: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise StoryBrokenError(failure())
        time.sleep(0.05)
    return value


def tell(story: Teller, work: Path, services: list[Running], *, detach: bool) -> dict[str, str]:
    ks_dir, lock_dir, racs_dir = work / "keyserver", work / "lock", work / "racs"
    card, pki_dir = work / "card.json", work / "pki"
    api = KeyServerApi(f"http://127.0.0.1:{free_port(1)}", "")
    state: dict[str, Any] = {}

    def make_pki() -> str:
        run("elock_demo.cli", "pki", "init", "--dir", str(pki_dir))
        made = len(list(pki_dir.glob("*.pem")))
        return f"{made} certificates (3 of them CAs) in {pki_dir}, P-256, private keys mode 0600"

    story.step("Make the PKI with elock pki init", make_pki)

    def start_keyserver() -> str:
        config = setup.keyserver_config(ks_dir, pki_dir)
        cli = ["key_provisioner.cli", "--config", str(config)]
        run(*cli, "migrate")
        api.token = run(*cli, "token", "create", "--role", "admin", "--name", "demo").strip()
        (ks_dir / "admin.token").write_text(api.token + "\n")
        os.chmod(ks_dir / "admin.token", 0o600)
        port = api.url.rsplit(":", 1)[1]
        # uvicorn logs "Application startup complete" before it binds; this line comes after
        service = Service("key server", [*cli, "serve", "--port", port], ks_dir / "keyserver.log",
                          "Uvicorn running on")  # fmt: skip
        services.append(service)
        return service.start(detach=detach) + f" on {api.url} (SQLite, worker, push credentials)"

    story.step("Start the key server (FastAPI, SQLite, background worker)", start_keyserver)

    def enrol() -> str:
        port = free_port()
        enrolled = api.call(
            "POST", "/locks", {"name": "front-door", "host": "127.0.0.1", "port": port}
        )
        state["lock"] = enrolled["lock"]
        setup.install_lock(lock_dir, enrolled["bundle"], work / "bundle.json")
        state["uri"] = f"coaps://127.0.0.1:{port}/lock"
        return f"lock {state['lock']['id'][:8]}... enrolled; bundle installed with elock-lock init"

    story.step("Enrol a lock through the API and install its bundle", enrol)

    def start_lock() -> str:
        serve = ["lock_server.cli", "serve", "--config", str(lock_dir / "lock.toml")]
        service = Service("lock", serve, lock_dir / "lock.log", "listening on")
        services.append(service)
        return service.start(detach=detach) + f", {state['uri']} (DTLS 1.2 PSK, simulated relay)"

    story.step("Start the lock", start_lock)

    def card_step() -> str:
        run("firmware.virtual.cli", "personalize", "--card", str(card), "--seid", SEID,
            "--issuer-cert", str(pki_dir / "se-issuer-ca.pem"),
            "--issuer-key", str(pki_dir / "se-issuer-ca.key"),
            "--key-server-ca", str(pki_dir / "key-server-ca.pem"))  # fmt: skip
        daemon = setup.start_pcscd()
        services.append(daemon)
        serve = ["firmware.virtual.cli", "serve", "--card", str(card)]
        service = Service("virtual card", serve, work / "card.log", "serving")
        services.append(service)
        service.start(detach=detach)
        setup.wait_for_reader()
        return (f"key pair made in the card, certified for {SEID}; in {VPCD_READER!r} of "
                f"{daemon.describe()}")  # fmt: skip

    story.step("Personalize a secure element and put it behind pcscd", card_step)

    def start_racs() -> str:
        port = free_port(1)
        config = setup.racs_config(racs_dir, pki_dir, SEID, VPCD_READER, port)
        state["apdu_log"] = racs_dir / "apdus.log"
        args = ["racs.cli", "--config", str(config), "--log-apdus", str(state["apdu_log"]),
                "--ready-line", "racs-server ready on {port}"]  # fmt: skip
        service = Service("RACS server", args, racs_dir / "racs.log", "racs-server ready")
        services.append(service)
        started = service.start(detach=detach)
        body = {"seid": SEID, "racs_server": f"127.0.0.1:{port}", "label": "demo phone"}
        state["se"] = api.call("POST", "/secure-elements", body)
        return f"{started} on 127.0.0.1:{port} (TLS#1, client certificates); card registered"

    story.step("Start the RACS server and register the card with the key server", start_racs)

    def issue_and_push(label: str) -> Any:
        body = {"lock_id": state["lock"]["id"], "secure_element_id": state["se"]["id"],
                "label": label}  # fmt: skip
        key = api.call("POST", "/keys", body)

        def installed() -> Any:
            push = api.call("GET", f"/keys/{key['id']}")["push"]
            return push if push["state"] == "installed" else None

        def why() -> str:
            return f"the key never reached the card: {api.call('GET', '/keys/' + key['id'])}"

        _wait(installed, 30, why)
        return key

    def issue() -> str:
        began = time.monotonic()
        key = state["key"] = issue_and_push("Front door")
        took = (time.monotonic() - began) * 1000
        records = setup.tls2_apdus(state["apdu_log"])
        return (f"key {key['key_id']} issued and installed in the card {took:.0f} ms later: "
                f"{records} TLS#2 APDUs through RACS")  # fmt: skip

    story.step("Issue a key; the key server pushes it into the card (RACS + TLS#2)", issue)

    def nothing_in_clear() -> str:
        key = state["key"]
        fields = {"the PSK": key["psk"], "the identity": key["identity"], "the label": "Front door"}
        leaked = setup.clear_in_log(state["apdu_log"], fields)
        if leaked:
            raise StoryBrokenError(f"the RACS APDU log shows {', '.join(leaked)} in clear")
        return "the RACS server's APDU log holds no byte of the PSK, identity or label in clear"

    story.step("Check what the RACS server saw", nothing_in_clear)

    def open_door() -> str:
        status, out = run_status("key_client.cli", "--reader", VPCD_READER, "--json", "Front door")
        if status != 0 or out.get("status") != "opened":
            raise StoryBrokenError(f"the lock did not open: {out}")
        return (f"opened in {out['elapsed_ms']} ms, {out['apdu_exchanges']} APDU exchanges: "
                "the card ran DTLS and CoAP, the host only carried datagrams")  # fmt: skip

    story.step("Open the door with coap-open (card behind pcscd)", open_door)

    def revoke() -> str:
        key_id, lock_id = state["key"]["id"], state["lock"]["id"]
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
        return (f"the lock confirmed revocation list version {version}; "
                "the key server deleted the container from the card")  # fmt: skip

    story.step("Revoke the key through the API", revoke)

    def refused() -> str:
        status, out = run_status("key_client.cli", "--reader", VPCD_READER, "--json", "Front door")
        if status != 6:
            raise StoryBrokenError(f"the card still has the key: {out}")
        answer = setup.open_with_copy(state["key"])
        if "key revoked" not in answer:
            raise StoryBrokenError(f"the lock did not refuse a copy of the key: {answer}")
        return (f"coap-open exits 6 ({out['message']}); a copy of the key (identity and PSK) is "
                f"refused by the lock: {answer.strip()}")  # fmt: skip

    story.step("Try the revoked key", refused)

    def audit() -> str:
        config_file = str(lock_dir / "lock.toml")
        status = json.loads(run("lock_server.cli", "status", "--config", config_file, "--json"))
        rows = [r for r in status["recent_audit"] if r["action"] == "open"]
        return "the lock's audit log: " + "; ".join(f"{r['outcome']} ({r['reason']})" for r in rows)

    story.step("Read the lock's audit log", audit)
    if detach:

        def spare_key() -> str:
            key = issue_and_push("Back door")
            return f"key {key['key_id']} 'Back door' is in the card for the phone app"

        story.step("Issue another key for you to try (--keep)", spare_key)
    return {"api": api.url, "token_file": str(ks_dir / "admin.token"), "reader": VPCD_READER}
