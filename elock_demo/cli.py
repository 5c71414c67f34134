"""``elock demo``: the story of the system, told by running it.

Every step runs the real programs (the lock process, libcoap's client) on
loopback and prints what happened and how long it took. The exit status says
whether the story held; everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StoryBrokenError(Exception):
    """A step of the demo did not do what the story says."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="elock", description="eLock umbrella command")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the whole story on loopback")
    demo.add_argument("--keep", action="store_true", help="leave the lock running at the end")
    demo.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    demo.set_defaults(func=run_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


def run_demo(args: argparse.Namespace) -> int:
    client = shutil.which("coap-client-openssl")
    if client is None:
        print("elock demo: coap-client-openssl is missing; run scripts/install.sh", file=sys.stderr)
        return 2
    work = args.dir or Path(tempfile.mkdtemp(prefix="elock-demo-"))
    story = Story()
    try:
        with _lock_process(work / "lock", story, keep=args.keep) as lock:
            _tell(story, lock, client)
    except StoryBrokenError as exc:
        print(f"\nThe story broke: {exc}", file=sys.stderr)
        return 1
    print(f"\nThe story held: {story.count} steps in {story.elapsed():.2f} s.")
    return 0


class Story:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.count = 0

    def step(self, title: str, action: Callable[[], str]) -> str:
        self.count += 1
        began = time.monotonic()
        print(f"[{self.count}] {title} ...", flush=True)
        result = action()
        print(f"    {result}  ({(time.monotonic() - began) * 1000:.0f} ms)", flush=True)
        return result

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _tell(story: Story, lock: _Lock, client: str) -> None:
    key: dict[str, Any] = {}
    card = lock.directory.parent / "card.json"

    story.step(
        "Personalize a secure element (a virtual SIM in a card file)",
        lambda: _run("firmware.cli", "personalize", "--card", str(card)).strip(),
    )

    def issue() -> str:
        key.update(lock.mint())
        _run("firmware.cli", "install", "--card", str(card), "--label", "Front door",
             "--uri", lock.uri, "--identity", key["identity"], "--psk-stdin",
             stdin=key["psk"] + "\n")  # fmt: skip
        return (f"key {key['key_id']} is in the card: identity {key['identity']}; "
                "its PSK went in sealed and never comes out")  # fmt: skip

    story.step("Issue a key and install it into the card", issue)

    def listed() -> str:
        keys = json.loads(_run("key_client.cli", "--card", str(card), "--list", "--json"))
        return "the card holds: " + ", ".join(f"{k['label']} -> {k['uri']}" for k in keys)

    story.step("Ask the card which keys it holds (coap-open --list)", listed)

    def open_door() -> str:
        out = json.loads(_run("key_client.cli", "--card", str(card), "--json").splitlines()[-1])
        if out.get("status") != "opened" or not lock.relay_on():
            raise StoryBrokenError(f"the lock did not open: {out}")
        return (
            f"opened in {out['elapsed_ms']} ms, {out['apdu_exchanges']} APDU exchanges: "
            "the card ran DTLS and CoAP itself, the host only carried datagrams"
        )

    story.step("Open the door with coap-open (the card runs DTLS-PSK and CoAP)", open_door)

    def relock() -> str:
        deadline = time.monotonic() + 10
        while lock.relay_on():
            if time.monotonic() > deadline:
                raise StoryBrokenError("the relay stayed energized")
            time.sleep(0.05)
        return "the relay is released again: locked"

    story.step("Wait for the open time to end", relock)

    def revoke() -> str:
        admin = lock.mint("--admin", "--no-open")
        body = json.dumps({"version": 1, "revoked": [key["key_id"]]})
        out = _coap(client, "post", admin, lock.uri.replace("/lock", "/admin/revocations"), body)
        if '"version":1' not in out:
            raise StoryBrokenError(f"the lock did not confirm the revocation: {out.strip()}")
        return "the lock confirmed revocation list version 1"

    story.step("Revoke the key with an admin key", revoke)

    def refused() -> str:
        command = [sys.executable, "-m", "key_client.cli", "--card", str(card), "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        out = json.loads(done.stdout.splitlines()[-1])
        if done.returncode != 3 or "key revoked" not in out.get("message", "") or lock.relay_on():
            raise StoryBrokenError(f"the revoked key was not refused: {out}")
        return f"coap-open exits 3: {out['message']}; the relay never moved"

    story.step("Try the revoked key", refused)

    def audit() -> str:
        rows = lock.status()["recent_audit"]
        return "audit log: " + "; ".join(
            f"{r['outcome']} {r['action']} ({r['reason']})" for r in rows
        )

    story.step("Read the lock's audit log", audit)


def _run(module: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", module, *args], input=stdin,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if done.returncode != 0:
        raise StoryBrokenError(f"{module} {args[0]} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


class _Lock:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.uri = f"coaps://127.0.0.1:{port}/lock"

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "lock_server.cli", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise StoryBrokenError(f"elock-lock {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def mint(self, *args: str) -> dict[str, Any]:
        return json.loads(
            self.cli("mint", "--config", str(self.directory / "lock.toml"), "--json", *args)
        )  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return json.loads(
            self.cli("status", "--config", str(self.directory / "lock.toml"), "--json")
        )  # type: ignore[no-any-return]

    def relay_on(self) -> bool:
        path = self.directory / "var" / "relay.state"
        return path.exists() and path.read_text().strip() == "1"


@contextmanager
def _lock_process(directory: Path, story: Story, *, keep: bool) -> Iterator[_Lock]:
    lock = _Lock(directory, _free_udp_port())
    story.step(
        "Set up a lock (secret, config, simulated relay)",
        lambda: lock.cli("init", "--dir", str(directory), "--port", str(lock.port)).strip(),
    )
    config = directory / "lock.toml"
    config.write_text(config.read_text().replace("open_seconds = 5.0", "open_seconds = 1.0"))
    log = open(directory / "lock.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lock_server.cli", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=keep,
    )

    def started() -> str:
        deadline = time.monotonic() + 15
        while b"listening on" not in (directory / "lock.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StoryBrokenError(
                    "the lock did not start: " + (directory / "lock.log").read_text()
                )
            time.sleep(0.05)
        return f"listening on coaps://127.0.0.1:{lock.port} (pid {proc.pid})"

    try:
        story.step("Start the lock (CoAP over DTLS 1.2 PSK)", started)
        yield lock
    finally:
        if keep:
            print(f"\nThe lock keeps running (pid {proc.pid}); config {config}.")
            print(f"Mint a key:  elock-lock mint --config {config}\nStop it:     kill {proc.pid}")
        else:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        log.close()


def _coap(client: str, method: str, key: dict[str, Any], uri: str, body: str | None = None) -> str:
    args = [client, "-m", method, "-u", key["identity"], "-k", key["psk"], "-B", "5"]
    if body is not None:
        args += ["-t", "50", "-e", body]
    done = subprocess.run(
        [*args, uri], capture_output=True, text=True, timeout=20, env={**os.environ}
    )
    return done.stdout + done.stderr


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
