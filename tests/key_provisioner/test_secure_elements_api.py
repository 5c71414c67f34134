"""Secure elements through the API: register, list, show."""

from __future__ import annotations

import datetime as dt
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.key_provisioner.conftest import Api


def _certificate(common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_register_with_and_without_certificate(admin: Api, auditor: Api) -> None:
    pem = _certificate("se-0001")
    element = admin.ok(
        "POST",
        "/secure-elements",
        201,
        json={
            "seid": "se-0001",
            "racs_server": "racs.example.net:7443",
            "certificate_pem": pem,
            "label": "Alice's SIM",
        },
    )
    assert element["certificate"]["subject"] == "CN=se-0001"
    assert len(element["certificate"]["sha256"]) == 64
    assert element["certificate"]["pem"].strip() == pem.strip()
    plain = admin.register_se("se-0002")
    assert plain["certificate"] is None
    shown = auditor.ok("GET", f"/secure-elements/{element['id']}")
    assert shown == element
    listed = auditor.ok("GET", "/secure-elements")
    assert [e["seid"] for e in listed["items"]] == ["se-0002", "se-0001"]


def test_register_refusals(admin: Api, auditor: Api) -> None:
    admin.register_se("se-1")
    duplicate = admin.post("/secure-elements", json={"seid": "se-1", "racs_server": "h:1"})
    assert duplicate.status_code == 409
    bad_pem = admin.post(
        "/secure-elements",
        json={"seid": "se-2", "racs_server": "h:1", "certificate_pem": "-----BEGIN nothing"},
    )
    assert bad_pem.status_code == 422
    assert bad_pem.json()["type"] == "urn:elock:problem:invalid-request"
    for racs in ["no-port", "h:99999", "h:0", "h :1"]:
        response = admin.post("/secure-elements", json={"seid": "se-3", "racs_server": racs})
        assert response.status_code == 422, racs
    assert (
        admin.post("/secure-elements", json={"seid": "bad id", "racs_server": "h:1"}).status_code
        == 422
    )
    assert (
        auditor.post("/secure-elements", json={"seid": "se-4", "racs_server": "h:1"}).status_code
        == 403
    )
    assert admin.get(f"/secure-elements/{uuid.uuid4()}").status_code == 404
    admin.ok("POST", "/secure-elements", 201, json={"seid": "se-6", "racs_server": "[::1]:7443"})
