"""The property checks fail on broken state machines: learned ones, and edited models.

Two broken copies are learned from code, each a bug DTLS-Fuzzer found in real
stacks: a DTLS client that hands application data up before the handshake, and
a TLS 1.3 server that lets a client skip its CertificateVerify (client
authentication bypass). The other properties are shown on committed models
with one transition edited, the smallest change that breaks each.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from firmware.dtls.client import ApplicationDataReceived, DtlsClient, DtlsState
from firmware.dtls.records import CT_APPLICATION_DATA, Record
from firmware.tls13 import Tls13Server
from firmware.tls13.events import ServerState
from firmware.tls13.messages import HandshakeType
from tests.models import dtls_client_sul, tls13_sul
from tests.models.learning import learn
from tests.models.mealy import Model, State
from tests.models.properties import (
    check_dead_after_fatal,
    check_handshake,
    check_retransmission,
)
from tests.models.targets import DTLS_CLIENT, TLS13_SERVER
from tests.models.test_properties import LOCK


class EarlyApplicationDataClient(DtlsClient):
    """Broken on purpose: takes plaintext application data in any state."""

    def _handle_record(self, record: Record) -> None:
        if record.content_type == CT_APPLICATION_DATA and self.state is not DtlsState.CONNECTED:
            self._event(ApplicationDataReceived(record.fragment))
            return
        super()._handle_record(record)


class CertificateVerifySkippingServer(Tls13Server):
    """Broken on purpose: a Finished where CertificateVerify belongs is taken as Finished."""

    def _handle_handshake(self, msg_type: int, body: bytes, raw: bytes) -> None:
        if (
            self.state is ServerState.EXPECT_CLIENT_CERTIFICATE_VERIFY
            and msg_type == HandshakeType.FINISHED
        ):
            self._set_state(ServerState.EXPECT_CLIENT_FINISHED)
        super()._handle_handshake(msg_type, body, raw)


@pytest.mark.slow
def test_a_client_taking_early_application_data_is_caught() -> None:
    sul = dtls_client_sul.DtlsClientSul(EarlyApplicationDataClient)
    model, _ = learn("broken", sul, DTLS_CLIENT.small_alphabet, DTLS_CLIENT.ci_bound)
    assert model.to_dot() != DTLS_CLIENT.committed(small=True).to_dot()
    violations = check_handshake(model, DTLS_CLIENT.spec)
    assert any("application data before Finished" in v for v in violations), violations
    assert check_handshake(DTLS_CLIENT.committed(small=True), DTLS_CLIENT.spec) == []


@pytest.mark.slow
def test_a_server_skipping_certificate_verify_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("firmware.tls_endpoint.Tls13Server", CertificateVerifySkippingServer)
    sul = tls13_sul.Tls13ApduSul()
    model, _ = learn("broken", sul, TLS13_SERVER.small_alphabet, TLS13_SERVER.ci_bound)
    violations = check_handshake(model, TLS13_SERVER.spec)
    assert any("completes without CV" in v for v in violations), violations


def edit(
    model: Model, word: list[str], letter: str, output: str, target: State | None = None
) -> Model:
    """The model with one transition changed: from the state ``word`` leads to."""
    state = model.initial
    for w in word:
        state = model.step(state, w)[1]
    transitions = {s: dict(row) for s, row in model.transitions.items()}
    transitions[state][letter] = (output, target or model.step(state, letter)[1])
    return replace(model, transitions=transitions)


def reached(model: Model, word: list[str]) -> State:
    state = model.initial
    for w in word:
        state = model.step(state, w)[1]
    return state


def test_the_relay_before_a_handshake_is_caught() -> None:
    lock = LOCK.committed()
    broken = edit(lock, [], "APP", "APP(2.04)+RELAY_ON")
    violations = check_handshake(broken, LOCK.spec)
    assert any("relay energized" in v for v in violations), violations
    assert any("application data before Finished" in v for v in violations), violations


def test_the_relay_on_a_handshake_message_is_caught() -> None:
    lock = LOCK.committed()
    happy = ["CH", "CH_COOKIE", "CKE", "CCS", "FIN"]
    broken = edit(lock, happy, "REPEAT", "CCS+FIN+RELAY_ON")
    violations = check_handshake(broken, LOCK.spec)
    assert any("relay energized outside an authorized request" in v for v in violations)


def test_completing_with_an_unknown_identity_is_caught() -> None:
    lock = LOCK.committed()
    connected = reached(lock, ["CH", "CH_COOKIE", "CKE", "CCS", "FIN"])
    broken = edit(
        lock, ["CH", "CH_COOKIE", "CKE_UNKNOWN", "CCS"], "FIN", "CCS+FIN+CONNECTED", connected
    )
    violations = check_handshake(broken, LOCK.spec)
    assert any("unknown identity" in v for v in violations), violations


def test_completing_with_a_message_skipped_is_caught() -> None:
    lock = LOCK.committed()
    connected = reached(lock, ["CH", "CH_COOKIE", "CKE", "CCS", "FIN"])
    broken = edit(lock, ["CH", "CH_COOKIE", "CKE"], "FIN", "CCS+FIN+CONNECTED", connected)
    violations = check_handshake(broken, LOCK.spec)
    assert any("completes without CCS" in v for v in violations), violations


def test_life_after_a_fatal_alert_is_caught() -> None:
    client = DTLS_CLIENT.committed()
    dead = ["ALERT"]
    broken = edit(client, dead, "APP", "APP_RECEIVED")
    assert any("is not dead" in v for v in check_dead_after_fatal(broken, DTLS_CLIENT.spec))
    assert check_dead_after_fatal(client, DTLS_CLIENT.spec) == []


def test_a_session_resumed_after_an_alert_is_caught() -> None:
    lock = LOCK.committed()
    happy = ["CH", "CH_COOKIE", "CKE", "CCS"]
    connected = reached(lock, [*happy, "FIN"])
    broken = edit(lock, [*happy, "ALERT"], "FIN", "CCS+FIN+CONNECTED", connected)
    violations = check_handshake(broken, LOCK.spec)
    assert any("completes without" in v for v in violations), violations


def test_a_repeated_flight_that_advances_is_caught() -> None:
    tls = TLS13_SERVER.committed()
    after_cv = reached(tls, ["CH", "CERT", "CV"])
    broken = edit(tls, ["CH", "CERT"], "REPEAT", "NONE", after_cv)
    violations = check_retransmission(broken, TLS13_SERVER.spec)
    assert any("advanced the state" in v for v in violations), violations
    assert check_retransmission(tls, TLS13_SERVER.spec) == []
