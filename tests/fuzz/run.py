"""Run one fuzz target under atheris (libFuzzer, coverage-guided).

    .venv/bin/python -m tests.fuzz.run TARGET [libFuzzer options] [corpus dirs]

For an hour, keeping what it finds in a scratch corpus and the repo's as seeds::

    mkdir -p /tmp/corpus && .venv/bin/python -m tests.fuzz.run apdu \\
        -max_total_time=3600 -artifact_prefix=/tmp/ /tmp/corpus tests/fuzz/corpus/apdu

A crash leaves ``crash-<sha1>`` where ``-artifact_prefix`` says; copy it into
``tests/fuzz/regressions/TARGET/`` and ``test_fuzz.py`` replays it for good.
Only the modules a target is about are instrumented (``COVERED``): instrumenting
every eLock package costs seconds per start, which the short CI runs cannot spare.
"""

from __future__ import annotations

import importlib
import logging
import sys

import atheris

_CARD = ["firmware.applet", "firmware.dispatch", "firmware.apdu", "firmware.tls_apdu"]
_DTLS = ["firmware.dtls"]
_TLS13 = ["firmware.tls13"]
COVERED: dict[str, list[str]] = {
    "apdu": [
        *_CARD,
        "firmware.personalization",
        "firmware.pin",
        "firmware.opening",
        "elock_common.tlv",
    ],
    "tlv_and_containers": ["elock_common.tlv", "elock_common.container"],
    "provisioning_request": [
        "elock_common.provisioning_wire",
        "elock_common.tlv",
        "elock_common.container",
    ],
    "dtls_records": _DTLS,
    "dtls_client": _DTLS,
    "coap_message": ["firmware.coap_message"],
    "tls13_messages": _TLS13,
    "tls13_server": _TLS13,
    "racs_line": ["racs.protocol"],
    "key_identity": ["elock_common.identity"],
    "lock_payloads": ["lock_server.resources", "lock_server.dtls_transport"],
    "keyserver_answers": [
        "elock_push.push",
        "elock_common.provisioning_wire",
        "elock_common.container",
    ],
    "sync_messages": ["elock_common.lock_sync", "elock_common.card_sync"],
}


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name, options = sys.argv[1], sys.argv[2:]
    logging.disable(logging.CRITICAL)  # refused input logs a warning per run: millions
    if name not in COVERED:
        sys.exit(f"unknown target {name!r}; targets: {', '.join(COVERED)}")
    with atheris.instrument_imports(include=COVERED[name]):
        for module in COVERED[name]:
            importlib.import_module(module)
    from tests.fuzz.targets import TARGETS

    atheris.Setup([sys.argv[0], *options], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
