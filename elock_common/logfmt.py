"""Log lines for people (text) or for a log shipper (one JSON object per line).

Every daemon takes ``--log-format text|json``. A JSON line carries the event's
fields as keys, the same names the metrics use as labels (``lock``,
``reason``, ``outcome``...) plus the ones too unbounded to be labels
(``key_id``, ``request_id``): a log search and a dashboard then speak of the
same things. Callers add fields with ``extra={...}``; the key server's request
id comes from :data:`REQUEST_ID`, set once per request by its middleware.
Nothing secret is ever passed as a field: identities and PSKs are not fields.
"""

from __future__ import annotations

import argparse
import contextvars
import datetime as dt
import json
import logging
from typing import Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The fields a JSON line may carry, when the event has them.
FIELDS = (
    "lock",
    "lock_id",
    "key_id",
    "action",
    "outcome",
    "reason",
    "cause",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "seid",
    "command",
)
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "elock_request_id", default=None
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if "request_id" not in line and (request_id := REQUEST_ID.get()) is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str, level: int) -> None:
    """``logging.basicConfig`` with the chosen format, for the daemons' ``main``."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text lines, or one JSON object per line with the event's fields",
    )
