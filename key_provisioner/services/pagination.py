"""Keyset pagination: newest first, stable under inserts, O(page) at any depth.

A cursor is the sort key of the last row of a page, as opaque base64url JSON.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from key_provisioner.core.errors import InvalidRequestError

T = TypeVar("T")
MAX_LIMIT = 500
_MAX_ID = 2**63 - 1  # a BIGINT: larger ids cannot be bound, and none is ever handed out


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(*values: Any) -> str:
    parts = [v.isoformat() if isinstance(v, dt.datetime) else str(v) for v in values]
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, kinds: Sequence[type]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError
        return [_parse(kind, part) for kind, part in zip(kinds, parts, strict=True)]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError):
        raise InvalidRequestError("cursor is not one this API returned") from None


def _parse(kind: type, text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError
    if kind is dt.datetime:
        value = dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            raise ValueError
        # As stored (UTC); a time that leaves the calendar there raises OverflowError.
        return value.astimezone(dt.UTC)
    if kind is uuid.UUID:
        return uuid.UUID(text)
    if kind is int:
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise ValueError
        if (number := int(text)) > _MAX_ID:
            raise ValueError
        return number
    raise TypeError(kind)


def keyset(
    query: Select[Any],
    columns: Sequence[InstrumentedAttribute[Any]],
    kinds: Sequence[type],
    cursor: str | None,
    limit: int,
) -> Select[Any]:
    """Order ``query`` newest first by ``columns`` and start after ``cursor``."""
    if cursor is not None:
        after = decode_cursor(cursor, kinds)
        query = query.where(
            tuple_(*columns) < tuple(after) if len(columns) > 1 else columns[0] < after[0]
        )
    return query.order_by(*(c.desc() for c in columns)).limit(min(limit, MAX_LIMIT) + 1)


def page_of(rows: Sequence[T], limit: int, key: Any) -> Page[T]:
    """Cut the one extra row ``keyset`` asked for; it says whether more exist."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items, encode_cursor(*key(items[-1])) if more and items else None)
