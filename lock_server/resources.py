"""CoAP resources of the lock.

``/lock``: GET the state (observable), POST to open. ``/admin/revocations``
and ``/admin/audit`` serve the key server and need the admin right. Every
request carries the DTLS-authenticated claims; a refusal answers 4.01 or 4.03
with the reason as text, so a person and the audit log both learn why.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code as CoapCode

from elock_common import KeyIdentity, Rights
from lock_server.policy import Code, Refusal
from lock_server.service import LockService

JSON = 50
TEXT = 0
MAX_REVOKED = 20_000
_KEY_ID = re.compile(r"\A[0-9a-f]{12}\Z")


def _claims(request: aiocoap.Message) -> KeyIdentity | None:
    for claim in getattr(request.remote, "authenticated_claims", None) or ():
        if isinstance(claim, KeyIdentity):
            return claim
    return None


def _peer(request: aiocoap.Message) -> str:
    return str(getattr(request.remote, "hostinfo", "?"))


def _refused(refusal: Refusal) -> aiocoap.Message:
    code = CoapCode.UNAUTHORIZED if refusal.code is Code.UNAUTHORIZED else CoapCode.FORBIDDEN
    return aiocoap.Message(code=code, payload=refusal.reason.encode(), content_format=TEXT)


def _bad_request(reason: str) -> aiocoap.Message:
    return aiocoap.Message(code=CoapCode.BAD_REQUEST, payload=reason.encode(), content_format=TEXT)


def _json(code: CoapCode, body: Any) -> aiocoap.Message:
    payload = json.dumps(body, separators=(",", ":")).encode()
    return aiocoap.Message(code=code, payload=payload, content_format=JSON)


_NO_KEY = Refusal(Code.UNAUTHORIZED, "no eLock key on this session")


class LockResource(resource.ObservableResource):
    def __init__(self, service: LockService) -> None:
        super().__init__()
        self._service = service
        service.door.watch(self.updated_state)

    def _state(self) -> dict[str, object]:
        door = self._service.door
        return {"state": "open" if door.is_open else "locked", "open_seconds": door.open_seconds}

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        claims = _claims(request)
        if claims is None:
            return _refused(_NO_KEY)
        refusal = self._service.check(claims, Rights.OPEN | Rights.ADMIN)
        if refusal is not None:
            return _refused(refusal)
        return _json(CoapCode.CONTENT, self._state())

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        claims = _claims(request)
        if claims is None:
            self._service.record_unauthenticated(_peer(request), None, "open", _NO_KEY.reason)
            return _refused(_NO_KEY)
        refusal = await self._service.try_open(claims, _peer(request))
        if refusal is not None:
            return _refused(refusal)
        return aiocoap.Message(code=CoapCode.CHANGED, payload=b"opened", content_format=TEXT)


class _AdminResource(resource.Resource):
    def __init__(self, service: LockService) -> None:
        super().__init__()
        self._service = service

    async def _admin(self, request: aiocoap.Message, action: str) -> KeyIdentity | aiocoap.Message:
        claims = _claims(request)
        if claims is None:
            self._service.record_unauthenticated(_peer(request), None, action, _NO_KEY.reason)
            return _refused(_NO_KEY)
        refusal = self._service.check(claims, Rights.ADMIN)
        if refusal is not None:
            await self._service.record_refusal(
                _peer(request), claims.key_id_hex, action, refusal.reason
            )
            return _refused(refusal)
        return claims


class RevocationsResource(_AdminResource):
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        checked = await self._admin(request, "read revocations")
        if isinstance(checked, aiocoap.Message):
            return checked
        store = self._service.store
        return _json(
            CoapCode.CONTENT,
            {"version": store.revocation_version, "count": store.revocation_count()},
        )

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        checked = await self._admin(request, "push revocations")
        if isinstance(checked, aiocoap.Message):
            return checked
        try:
            version, key_ids = parse_revocations(request.payload)
        except ValueError as exc:
            await self._service.record_refusal(
                _peer(request), checked.key_id_hex, "push revocations", str(exc)
            )
            return _bad_request(str(exc))
        held = self._service.store.replace_revocations(version, key_ids)
        await self._service.record_admin(
            checked,
            _peer(request),
            "push revocations",
            f"version {version} with {len(key_ids)} key(s); holding version {held}",
        )
        return _json(CoapCode.CHANGED, {"version": held})


def parse_revocations(payload: bytes) -> tuple[int, list[str]]:
    """Check a pushed list strictly: anything odd changes nothing."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("payload is not JSON") from None
    if not isinstance(body, dict) or set(body) != {"version", "revoked"}:
        raise ValueError('payload must be {"version": int, "revoked": [key ids]}')
    version, revoked = body["version"], body["revoked"]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**53:
        raise ValueError("version must be a positive integer")
    if not isinstance(revoked, list) or len(revoked) > MAX_REVOKED:
        raise ValueError(f"revoked must be a list of at most {MAX_REVOKED} key ids")
    if not all(isinstance(k, str) and _KEY_ID.match(k) for k in revoked):
        raise ValueError("each key id must be 12 lowercase hex digits")
    return version, revoked


class AuditResource(_AdminResource):
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        checked = await self._admin(request, "read audit")
        if isinstance(checked, aiocoap.Message):
            return checked
        query: dict[str, int] = {}
        for item in request.opt.uri_query:
            name, _, value = item.partition("=")
            if name not in ("since", "limit") or not value.isdigit() or len(value) > 15:
                return _bad_request("query takes since=<id> and limit=<n>")
            query[name] = int(value)
        store = self._service.store
        # Asking for the rows after ``since`` says the key server holds those up to it.
        store.mark_audit_delivered(query.get("since", 0))
        rows = store.audit_rows(query.get("since", 0), query.get("limit", 100))
        return _json(CoapCode.CONTENT, [row.as_json() for row in rows])


def build_site(service: LockService) -> resource.Site:
    site = resource.Site()
    site.add_resource(
        [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
    )
    site.add_resource(["lock"], LockResource(service))
    site.add_resource(["admin", "revocations"], RevocationsResource(service))
    site.add_resource(["admin", "audit"], AuditResource(service))
    return site
