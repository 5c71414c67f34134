"""The shared key format against its published vectors and its own rules."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from hypothesis import given
from hypothesis import strategies as st

from elock_common import IdentityFormatError, KeyIdentity, LockSecret, Rights, mint_key

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "key_identity.json").read_text())
SECRET = LockSecret(bytes.fromhex(VECTORS["lock_secret_hex"]))


def _independent_psk(key: bytes, identity: bytes) -> bytes:
    """The KDF recomputed with pyca/cryptography instead of the stdlib hmac module."""
    mac = HMAC(key, hashes.SHA256())
    mac.update(b"elock/v1/psk\x00" + identity)
    return base64.urlsafe_b64encode(mac.finalize()[:12])


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: c["name"])
def test_valid_vectors_round_trip(case: dict) -> None:
    fields = dict(case["fields"])
    claims = KeyIdentity(
        version=fields.pop("version"),
        lock_tag=bytes.fromhex(fields.pop("lock_tag")),
        key_id=bytes.fromhex(fields.pop("key_id")),
        rights=Rights(fields.pop("rights")),
        **fields,
    )
    identity = case["identity"].encode()
    assert claims.encode() == identity
    assert KeyIdentity.decode(identity) == claims
    assert len(identity) == 32 and identity.isascii()
    assert SECRET.derive_psk(identity) == case["psk"].encode()
    assert (
        _independent_psk(bytes.fromhex(VECTORS["lock_secret_hex"]), identity)
        == case["psk"].encode()
    )


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_invalid_vectors_are_refused(case: dict) -> None:
    with pytest.raises(IdentityFormatError):
        KeyIdentity.decode(case["identity"])


def test_lock_secret_text_and_tag() -> None:
    assert SECRET.to_text() == VECTORS["lock_secret_text"]
    assert LockSecret.from_text(VECTORS["lock_secret_text"]) == SECRET
    assert SECRET.lock_tag.hex() == VECTORS["lock_tag_hex"]
    assert "hidden" in repr(SECRET) and VECTORS["lock_secret_text"] not in repr(SECRET)


def test_minted_keys_are_fresh_and_bound_to_their_lock() -> None:
    other = LockSecret.generate()
    claims_a, key_a = mint_key(SECRET)
    claims_b, _ = mint_key(SECRET)
    assert claims_a.key_id != claims_b.key_id
    assert KeyIdentity.decode(key_a.identity).lock_tag == SECRET.lock_tag != other.lock_tag
    assert other.derive_psk(key_a.identity) != key_a.psk
    assert "psk=<hidden>" in repr(key_a) and key_a.psk.decode() not in repr(key_a)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"not_before": 10, "not_after": 10},
        {"weekdays": 0},
        {"window_start": 600, "window_end": 600},
        {"window_end": 1441},
        {"max_uses": 256},
        {"rights": Rights(0)},
    ],
)
def test_nonsense_claims_are_refused(kwargs: dict) -> None:
    with pytest.raises(IdentityFormatError):
        KeyIdentity(lock_tag=b"ab", key_id=b"123456", **kwargs)


@pytest.mark.parametrize(
    "padded", ["JEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE=", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="]
)
def test_a_padded_identity_of_32_characters_is_refused(padded: str) -> None:
    """Found by atheris (tests/fuzz, target key_identity): canonical base64 with padding
    holds 23 or 22 bytes, and struct.error escaped decode. In the lock it escaped the
    PSK lookup through tinydtls instead of a refusal in the audit log."""
    with pytest.raises(IdentityFormatError, match="24 bytes"):
        KeyIdentity.decode(padded)


@given(st.binary(max_size=40) | st.text(max_size=40))
def test_decode_raises_only_its_own_error(data: bytes | str) -> None:
    try:
        KeyIdentity.decode(data)
    except IdentityFormatError:
        pass
