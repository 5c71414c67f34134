"""The key server's CoAP client for a lock's admin interface.

One ``AdminSession`` per lock visit: a fresh aiocoap client context with the
tinydtls transport, and a short-lived admin key minted from the lock secret
(that key is how the server authenticates itself to the lock). Everything a
lock answers is checked; a lock that misbehaves raises ``LockAdminError``
with a reason fit for the ``push_error`` column, never a stray exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeGuard

import aiocoap
from aiocoap import error as coap_error
from aiocoap.numbers.codes import Code

from elock_common import LockSecret, Rights, mint_key
from key_provisioner.services.audit import LockAuditRow, same_row

log = logging.getLogger(__name__)

JSON = 50
AUDIT_PAGE = 500
MAX_AUDIT_PAGES = 20  # per visit; the rest waits for the next visit
_KEY_ID = re.compile(r"\A[0-9a-f]{12}\Z")


def _consume(answer: asyncio.Future[aiocoap.Message]) -> None:
    """Read the outcome of an answer nobody waits for any more (no "never retrieved" noise)."""
    if not answer.cancelled():
        answer.exception()


class LockAdminError(Exception):
    """The lock could not be reached, refused us, or answered nonsense."""


@dataclass(frozen=True)
class AuditRead:
    rows: list[LockAuditRow]
    restarted: str | None = None  # why the lock's log is not the one pulled so far


class AdminSession:
    """``async with AdminSession(host, port, secret, ...) as lock: await lock.push(...)``."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: LockSecret,
        *,
        timeout: float,
        key_seconds: int = 300,
        clock: Any = time.time,
    ) -> None:
        self._base = f"coaps://{f'[{host}]' if ':' in host else host}:{port}"
        self._secret = secret
        self._timeout = timeout
        self._key_seconds = key_seconds
        self._clock = clock
        self._context: aiocoap.Context | None = None
        # aiocoap keeps DTLS connections in a weak pool: one that no message
        # refers to any more is collected between two requests, and its
        # finaliser resets the session through an already dead callback (a
        # warning, and a new handshake for the next request). Holding the
        # remotes until the context shuts down closes each session once, cleanly.
        self._remotes: list[object] = []

    async def __aenter__(self) -> AdminSession:
        now = int(self._clock())
        # A little slack backwards for a lock whose clock runs behind ours.
        claims, key = mint_key(
            self._secret,
            rights=Rights.ADMIN,
            not_before=max(0, now - 60),
            not_after=now + self._key_seconds,
        )
        self._context = await aiocoap.Context.create_client_context(transports=["tinydtls"])
        self._context.client_credentials.load_from_dict(
            {f"{self._base}/*": {"dtls": {"psk": key.psk, "client-identity": key.identity}}}
        )
        log.debug("admin session to %s with key %s", self._base, claims.key_id_hex)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._context is not None:
            await self._context.shutdown()
            self._context = None
        self._remotes.clear()

    async def push_revocations(self, version: int, revoked: list[str]) -> int:
        """POST the full list; returns the version the lock now holds."""
        payload = json.dumps({"version": version, "revoked": revoked}, separators=(",", ":"))
        body = await self._exchange(Code.POST, "/admin/revocations", payload.encode(), Code.CHANGED)
        return _version(body)

    async def revocation_state(self) -> tuple[int, int]:
        body = await self._exchange(Code.GET, "/admin/revocations", None, Code.CONTENT)
        count = body.get("count") if isinstance(body, dict) else None
        if not _is_count(count):
            raise LockAdminError("lock answered a revocation state without a count")
        return _version(body), int(count)

    async def audit(self, since: int) -> list[LockAuditRow]:
        """Rows after ``since``, page by page, up to ``MAX_AUDIT_PAGES`` pages."""
        rows: list[LockAuditRow] = []
        for _ in range(MAX_AUDIT_PAGES):
            page = await self.audit_page(since, AUDIT_PAGE)
            rows.extend(page)
            if not page or len(page) < AUDIT_PAGE:
                break
            since = max(row.id for row in page)
        return rows

    async def audit_page(self, since: int, limit: int) -> list[LockAuditRow]:
        """One exchange: up to ``limit`` rows after ``since``, in id order."""
        path = f"/admin/audit?since={since}&limit={limit}"
        body = await self._exchange(Code.GET, path, None, Code.CONTENT)
        if not isinstance(body, list):
            raise LockAdminError("lock answered an audit page that is not a list")
        return [_audit_row(item) for item in body]

    async def read_audit(self, cursor: int, anchor: LockAuditRow | None) -> AuditRead:
        """The rows after ``cursor``, checking that the lock's log is the one they come from.

        A lock's row ids start again when its state is lost or replaced, and its API
        answers only "rows after an id". So the read starts one row early: the first row
        must be row ``cursor`` as it was pulled (``anchor``). If the lock has another row
        there, its log is not the one pulled so far. If it has none there, one more
        question decides: rows below ``cursor`` mean the log started again; none mean
        only that the rows up to ``cursor`` were pruned (or that a new log is still
        empty, which loses nothing yet). A log that started again is read from its start.
        """
        if cursor == 0:
            return AuditRead(await self.audit(0))
        rows = await self.audit(cursor - 1)
        first = rows[0] if rows else None
        why = None
        if first is not None and first.id == cursor:
            if anchor is not None and not same_row(anchor, first):
                why = f"its row {cursor} is not the one pulled before"
        else:
            lowest = await self.audit_page(0, 1)
            if lowest and lowest[0].id < cursor:
                why = f"it has rows below {cursor} but not row {cursor}"
        if why is None:
            return AuditRead(rows)
        return AuditRead(await self.audit(0), restarted=why)

    async def _exchange(self, code: Code, path: str, payload: bytes | None, want: Code) -> Any:
        assert self._context is not None, "use AdminSession as an async context manager"
        request = aiocoap.Message(code=code, uri=self._base + path)
        if payload is not None:
            request.payload = payload
            request.opt.content_format = JSON
        try:
            # Never cancel aiocoap's response future: an answer arriving after a cancel
            # makes aiocoap raise InvalidStateError inside DTLSSocket's read callback,
            # which leaves tinydtls half-way and later aborts the process (double free).
            answer = self._context.request(request).response
            answer.add_done_callback(_consume)
            response = await asyncio.wait_for(asyncio.shield(answer), self._timeout)
        except TimeoutError:
            raise LockAdminError(
                f"no answer from {self._base} within {self._timeout:g} s"
            ) from None
        except (coap_error.Error, OSError) as exc:
            raise LockAdminError(f"cannot reach {self._base}: {_describe(exc)}") from None
        if response.remote not in self._remotes:
            self._remotes.append(response.remote)
        if response.code != want:
            text = response.payload[:200].decode("utf-8", "replace")
            raise LockAdminError(f"lock answered {response.code.dotted} to {path}: {text}")
        try:
            return json.loads(response.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise LockAdminError(f"lock answered {path} with a body that is not JSON") from None


def _version(body: Any) -> int:
    version = body.get("version") if isinstance(body, dict) else None
    if not _is_count(version):
        raise LockAdminError("lock answered without a valid revocation version")
    return int(version)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def _audit_row(item: Any) -> LockAuditRow:
    """Check one row. Only a bad id stops the pull (the cursor could not move
    past it); any other odd field is kept as far as it is meaningful, so one
    strange row cannot stall a lock's audit trail for good."""
    if not isinstance(item, dict) or not _is_count(item.get("id")):
        raise LockAdminError(f"lock answered an audit row without a valid id: {str(item)[:120]}")
    ts, key_id = item.get("ts"), item.get("key_id")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not 0 <= ts < 2**32:
        ts = 0.0  # unknown time (NaN and infinities fail the range test too)
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        key_id = None
    peer, action, outcome, reason = (
        _text(item.get(name)) for name in ("peer", "action", "outcome", "reason")
    )
    if outcome not in ("granted", "refused"):
        reason, outcome = f"{reason} (lock reported outcome {outcome[:20]!r})", "refused"
    return LockAuditRow(int(item["id"]), float(ts), key_id, peer, action, outcome, reason)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)[:300]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
