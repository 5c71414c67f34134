"""A stand-in lock implementing the admin contract, on aiocoap's DTLS server.

It runs as its own process: aiocoap's tinydtls server stops answering
handshakes under ``PYTHONMALLOC=debug`` (which ``python -X dev``, our test
command, turns on), and a child process runs without it. The test steers it
through files in its directory: ``mode`` makes it misbehave ("unauthorized",
"garbage", "silent", "stuck": answers its version without taking a newer list), and
it writes ``state.json`` after every request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class FakeLock:
    """The test side: start, read the state, change the mode, stop."""

    def __init__(self, secret_text: str, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        secret_file = directory / "secret"
        secret_file.write_text(secret_text)
        secret_file.chmod(0o600)
        self.proc: subprocess.Popen[str] | None = None

    def start(
        self, audit_rows: int = 0, audit_key_id: str = "", keyed_rows: int = 0, version: int = 0
    ) -> FakeLock:
        """``version``: the revocation version the lock holds when it starts (with an
        empty list), as a lock that kept its state from an earlier enrolment does."""
        args = [
            sys.executable,
            "-m",
            "tests.key_provisioner.fakelock",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--audit-rows",
            str(audit_rows),
            "--keyed-rows",
            str(keyed_rows),
            "--audit-key-id",
            audit_key_id,
            "--version",
            str(version),
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("PYTHONMALLOC", None)
        env.pop("PYTHONDEVMODE", None)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("fake lock did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.proc = None

    def set_mode(self, mode: str) -> None:
        (self.directory / "mode").write_text(mode)

    def state(self) -> dict[str, Any]:
        path = self.directory / "state.json"
        if not path.exists():
            return {
                "version": 0,
                "revoked": [],
                "pushes": [],
                "audit_requests": [],
                "admin_keys": [],
            }
        return json.loads(path.read_text())  # type: ignore[no-any-return]


# -- the lock process -------------------------------------------------------------------


def main() -> None:
    import aiocoap
    import aiocoap.resource as resource
    from aiocoap.numbers.codes import Code

    from elock_common import IdentityFormatError, KeyIdentity, LockSecret, Rights

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--audit-rows", type=int, default=0)
    p.add_argument("--keyed-rows", type=int, default=0)
    p.add_argument("--audit-key-id", default="")
    p.add_argument("--version", type=int, default=0)
    args = p.parse_args()
    directory: Path = args.dir
    secret = LockSecret.from_text((directory / "secret").read_text())
    state: dict[str, Any] = {
        "version": args.version,
        "revoked": [],
        "pushes": [],
        "audit_requests": [],
        "admin_keys": [],
    }
    audit = [_row(i + 1, None) for i in range(args.audit_rows)]
    audit += [_row(len(audit) + i + 1, args.audit_key_id) for i in range(args.keyed_rows)]

    class Credentials:
        def find_dtls_psk(self, identity: bytes) -> tuple[bytes, KeyIdentity]:
            try:
                claims = KeyIdentity.decode(identity)
            except IdentityFormatError:
                raise KeyError("not an eLock identity") from None
            if claims.lock_tag != secret.lock_tag:
                raise KeyError("another lock's key")
            return secret.derive_psk(identity), claims

        def __bool__(self) -> bool:  # an empty credentials object would disable DTLS
            return True

    def mode() -> str:
        path = directory / "mode"
        return path.read_text().strip() if path.exists() else "ok"

    def save() -> None:
        tmp = directory / "state.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(directory / "state.json")

    def refused(request: aiocoap.Message) -> aiocoap.Message | None:
        claims = next(
            (c for c in request.remote.authenticated_claims if isinstance(c, KeyIdentity)), None
        )
        if mode() == "unauthorized" or claims is None or not claims.rights & Rights.ADMIN:
            return aiocoap.Message(code=Code.UNAUTHORIZED, payload=b"key lacks the admin right")
        state["admin_keys"].append(
            {
                "key_id": claims.key_id_hex,
                "rights": int(claims.rights),
                "not_after": claims.not_after,
            }
        )
        return None

    def reply(code: Code, body: Any) -> aiocoap.Message:
        payload = b"\xffnot json" if mode() == "garbage" else json.dumps(body).encode()
        save()
        return aiocoap.Message(code=code, payload=payload, content_format=50)

    class Revocations(resource.Resource):
        async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
            if mode() == "silent":
                await asyncio.sleep(3600)
            if (no := refused(request)) is not None:
                return no
            body = json.loads(request.payload)
            state["pushes"].append(body)
            if body["version"] > state["version"] and mode() != "stuck":
                state["version"], state["revoked"] = body["version"], list(body["revoked"])
            return reply(Code.CHANGED, {"version": state["version"]})

    class Audit(resource.Resource):
        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            if (no := refused(request)) is not None:
                return no
            query = dict(q.partition("=")[::2] for q in request.opt.uri_query)
            state["audit_requests"].append(list(request.opt.uri_query))
            since, limit = int(query.get("since", 0)), min(int(query.get("limit", 100)), 500)
            return reply(Code.CONTENT, [r for r in audit if r["id"] > since][:limit])

    async def serve() -> None:
        site = resource.Site()
        site.add_resource(["admin", "revocations"], Revocations())
        site.add_resource(["admin", "audit"], Audit())
        # aiocoap binds its DTLS server one port above the one it is given.
        await aiocoap.Context.create_server_context(
            site,
            bind=("127.0.0.1", args.port - 1),
            transports=["tinydtls_server"],
            server_credentials=Credentials(),
        )
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def _row(ident: int, key_id: str | None) -> dict[str, Any]:
    return {
        "id": ident,
        "ts": time.time(),
        "key_id": key_id,
        "peer": "127.0.0.1:1",
        "action": "open",
        "outcome": "granted",
        "reason": "opened",
    }


if __name__ == "__main__":
    main()
