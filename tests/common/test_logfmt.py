"""``--log-format json``: one object per line with the event's fields and the request id."""

from __future__ import annotations

import json
import logging

from elock_common.logfmt import REQUEST_ID, JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("lock_server.service", logging.INFO, __file__, 1,
                               "open refused to key %s: %s", ("0a1b2c3d4e5f", "key revoked"),
                               None)  # fmt: skip
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_a_json_line_carries_the_event_fields() -> None:
    fields = {"lock": "gate", "key_id": "0a1b2c3d4e5f", "outcome": "refused",
              "reason": "key revoked", "peer_secret": "never"}  # fmt: skip
    line = JsonFormatter().format(_record(**fields))
    assert "\n" not in line
    body = json.loads(line)
    assert body["message"] == "open refused to key 0a1b2c3d4e5f: key revoked"
    assert (body["lock"], body["key_id"], body["outcome"]) == ("gate", "0a1b2c3d4e5f", "refused")
    assert body["level"] == "INFO" and body["logger"] == "lock_server.service"
    assert "peer_secret" not in body  # only the known fields, never whatever was attached
    assert "request_id" not in body


def test_the_request_id_comes_from_the_context() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        assert json.loads(JsonFormatter().format(_record()))["request_id"] == "req-42"
    finally:
        REQUEST_ID.reset(token)


def test_an_exception_stays_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record()
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exception"]
