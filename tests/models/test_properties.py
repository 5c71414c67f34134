"""The committed models meet the specification's happy paths and the handshake properties.

No learning here: these read ``docs/models/*.dot``. ``test_relearn.py`` checks
that the models are still what the code does; ``test_broken_copies.py`` that
these checks catch a broken state machine.
"""

from __future__ import annotations

import pytest

from tests.models.mealy import restricted
from tests.models.properties import check_all
from tests.models.targets import DTLS_CLIENT, TLS13_SERVER, Target, lock_target
from tests.models.targets import MODELS as MODEL_DIR

LOCK = lock_target(0, (b"", b""), MODEL_DIR)  # only its names and spec are used here
# The lock's models are bounded L* hypotheses (docs/testing.md), learned with the
# properties' witnesses asked of the lock at every equivalence query: a violation here is
# one the lock showed, not an artefact of the bound.
TARGETS = [DTLS_CLIENT, TLS13_SERVER, LOCK]
CONVERGED = [DTLS_CLIENT, TLS13_SERVER]

# RFC 6347 4.2.1 / RFC 4279 (DTLS, both roles) and RFC 8446 2 (TLS 1.3 with a client
# certificate): the happy path, and what each step must answer.
HAPPY = {
    "dtls-client": [
        ("HVR", "CH"),
        ("SH", "NONE"),
        ("SKE", "NONE"),
        ("SHD", "CKE+CCS+FIN"),
        ("CCS", "NONE"),
        ("FIN", "CONNECTED"),
        ("APP", "APP_RECEIVED"),
        ("SEND_APP", "APP"),
    ],
    "tls13-server": [
        ("CH", "SH+EE+CR+CERT+CV+FIN"),
        ("CERT", "NONE"),
        ("CV", "NONE"),
        ("FIN", "CONNECTED"),
        ("APP", "APP"),
    ],
    "lock-server": [
        ("CH", "HVR"),
        ("CH_COOKIE", "SH+SHD"),
        ("CKE", "NONE"),
        ("CCS", "NONE"),
        ("FIN", "CCS+FIN+CONNECTED"),
        ("APP", "APP(2.04)+RELAY_ON"),
    ],
}


@pytest.mark.parametrize("target", [*CONVERGED, LOCK], ids=lambda t: t.name)
def test_the_happy_path_is_the_specifications(target: Target) -> None:
    model = target.committed()
    word = [letter for letter, _ in HAPPY[target.name]]
    assert model.run(word) == [output for _, output in HAPPY[target.name]]


@pytest.mark.parametrize("small", [False, True], ids=["full", "small"])
@pytest.mark.parametrize("target", TARGETS)
def test_the_model_has_every_property(target: Target, small: bool) -> None:
    model = target.committed(small)
    assert check_all(model, target.spec) == []


@pytest.mark.parametrize("target", CONVERGED, ids=lambda t: t.name)
def test_the_small_model_is_the_full_one_seen_through_fewer_inputs(target: Target) -> None:
    """Two learning runs with different alphabets agree, a check on both of them.

    Not for the lock: two bounded hypotheses need not agree."""
    full, small = target.committed(), target.committed(small=True)
    assert restricted(full, list(small.alphabet)).to_dot() == small.to_dot()


def test_each_check_runs_on_every_model() -> None:
    """Guard against a check that passes because it looked at nothing."""
    for target in [*CONVERGED, LOCK]:
        model = target.committed()
        assert target.spec.repeat_input in model.alphabet
        assert set(target.spec.happy_path) <= set(model.alphabet)
        outputs = {out for row in model.transitions.values() for out, _ in row.values()}
        assert any("CONNECTED" in out for out in outputs)
        assert any(out.startswith("APP") for out in outputs)
