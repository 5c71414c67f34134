"""The story: enrol a lock, issue a key into a card, open, revoke, refused.

Until the key server pushes containers through RACS and TLS#2 on its own,
the demo installs the issued key into the card through the card's sealed
personalization APDUs: the PSK travels once, from the API's answer to the
card, on a pipe.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Protocol

from elock_demo.services import KeyServerApi, Service, StoryBrokenError, free_port, run

FAST_WORKER = (
    "poll_seconds = 0.3\ncoap_timeout = 2\nretry_base = 0.3\nretry_max = 2\naudit_seconds = 1\n"
)


class Teller(Protocol):
    def step(self, title: str, action: Any) -> str: ...


def tell(story: Teller, work: Path, services: list[Service], *, detach: bool) -> dict[str, str]:
    ks_dir, lock_dir, card = work / "keyserver", work / "lock", work / "card.json"
    ks_dir.mkdir(exist_ok=True)
    config = ks_dir / "keyserver.toml"
    api = KeyServerApi(f"http://127.0.0.1:{free_port(1)}", "")
    state: dict[str, Any] = {}

    def start_keyserver() -> str:
        master = ks_dir / "master.key"
        master.write_text(run("key_provisioner.cli", "master-key").strip() + "\n")
        os.chmod(master, 0o600)
        config.write_text(f'[keyserver]\ndatabase_url = "sqlite:///{ks_dir}/keyserver.sqlite3"\n'
                          f'master_key_file = "master.key"\n\n[worker]\n{FAST_WORKER}')  # fmt: skip
        cli = ["key_provisioner.cli", "--config", str(config)]
        run(*cli, "migrate")
        api.token = run(*cli, "token", "create", "--role", "admin", "--name", "demo").strip()
        (ks_dir / "admin.token").write_text(api.token + "\n")
        port = api.url.rsplit(":", 1)[1]
        service = Service("key server", [*cli, "serve", "--port", port], ks_dir / "keyserver.log",
                          "Application startup complete")  # fmt: skip
        services.append(service)
        return service.start(detach=detach) + f" on {api.url} (SQLite, admin token made)"

    story.step("Start the key server (FastAPI, SQLite, background worker)", start_keyserver)

    def enrol() -> str:
        port = free_port()
        enrolled = api.call(
            "POST", "/locks", {"name": "front-door", "host": "127.0.0.1", "port": port}
        )
        state["lock"] = enrolled["lock"]
        bundle = work / "bundle.json"
        bundle.write_text(json.dumps(enrolled["bundle"]))
        os.chmod(bundle, 0o600)
        run("lock_server.cli", "init", "--dir", str(lock_dir), "--bundle", str(bundle))
        bundle.unlink()  # the secret now lives only in the lock (and sealed in the key server)
        toml = lock_dir / "lock.toml"
        toml.write_text(toml.read_text().replace("open_seconds = 5.0", "open_seconds = 1.0"))
        state["uri"] = f"coaps://127.0.0.1:{port}/lock"
        return (
            f"lock {state['lock']['id'][:8]}... enrolled; its bundle installed with elock-lock init"
        )

    story.step("Enrol a lock through the API and install its bundle", enrol)

    def start_lock() -> str:
        serve = ["lock_server.cli", "serve", "--config", str(lock_dir / "lock.toml")]
        service = Service("lock", serve, lock_dir / "lock.log", "listening on")
        services.append(service)
        return service.start(detach=detach) + f", {state['uri']} (DTLS 1.2 PSK, simulated relay)"

    story.step("Start the lock", start_lock)

    def card_step() -> str:
        run("firmware.cli", "personalize", "--card", str(card))
        body = {"seid": "demo-card-1", "racs_server": "127.0.0.1:7443", "label": "demo phone"}
        se = api.call("POST", "/secure-elements", body)
        state["se"] = se
        return "a virtual SIM (card file) personalized and registered as demo-card-1"

    story.step("Personalize a secure element and register it", card_step)

    def issue() -> str:
        key = api.call("POST", "/keys", {"lock_id": state["lock"]["id"], "secure_element_id":
                                         state["se"]["id"], "label": "Front door"})  # fmt: skip
        state["key"] = key
        run("firmware.cli", "install", "--card", str(card), "--label", "Front door",
            "--uri", key["uri"], "--identity", key["identity"], "--psk-stdin",
            stdin=key["psk"] + "\n")  # fmt: skip
        return (f"key {key['key_id']} issued (identity {key['identity']}); its PSK went once "
                "from the API into the card, sealed, and never comes out")  # fmt: skip

    story.step("Issue a key through the API and put it into the card", issue)

    def open_door() -> str:
        out = json.loads(run("key_client.cli", "--card", str(card), "--json").splitlines()[-1])
        if out.get("status") != "opened":
            raise StoryBrokenError(f"the lock did not open: {out}")
        return (f"opened in {out['elapsed_ms']} ms, {out['apdu_exchanges']} APDU exchanges: "
                "the card ran DTLS and CoAP, the host only carried datagrams")  # fmt: skip

    story.step("Open the door with coap-open", open_door)

    def revoke() -> str:
        api.call("POST", f"/keys/{state['key']['id']}/revoke", {"reason": "phone lost"})
        began = time.monotonic()
        while True:
            lock = api.call("GET", f"/locks/{state['lock']['id']}")
            if lock["revocation"]["in_sync"]:
                break
            if time.monotonic() - began > 10:
                raise StoryBrokenError(
                    f"the lock never confirmed the revocation: {lock['revocation']}"
                )
            time.sleep(0.1)
        version = lock["revocation"]["confirmed_version"]
        return f"the lock confirmed revocation list version {version} to the key server"

    story.step("Revoke the key through the API", revoke)

    def refused() -> str:
        import subprocess
        import sys

        command = [sys.executable, "-m", "key_client.cli", "--card", str(card), "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        out = json.loads(done.stdout.splitlines()[-1])
        if done.returncode != 3 or "key revoked" not in out.get("message", ""):
            raise StoryBrokenError(f"the revoked key was not refused: {out}")
        return f"coap-open exits 3: {out['message']}"

    story.step("Try the revoked key", refused)

    def audit() -> str:
        config_file = str(lock_dir / "lock.toml")
        status = json.loads(run("lock_server.cli", "status", "--config", config_file, "--json"))
        rows = [r for r in status["recent_audit"] if r["action"] == "open"]
        return "the lock's audit log: " + "; ".join(f"{r['outcome']} ({r['reason']})" for r in rows)

    story.step("Read the lock's audit log", audit)
    return {"api": api.url, "token_file": str(ks_dir / "admin.token"), "card": str(card)}
