"""Personalization: PUT CONTAINER, DELETE CONTAINER and SET PIN, sealed with a transport key.

Until the key server reaches the card through its own TLS session (DESIGN.md,
"double TLS"), these commands are protected the way GlobalPlatform secure
channels protect card content management, kept deliberately in this one
module so that the TLS endpoint can replace it:

* the card gives a fresh 16-byte challenge (GET CHALLENGE, 00 84), kept in RAM
  and spent by the next sealed command whatever its outcome (no replay);
* the command data is ``AES-128-CBC(K_enc, iv, pad(plaintext)) || mac`` with
  ``iv = HMAC(K_mac, "iv" || challenge)[:16]`` and
  ``mac = HMAC-SHA256(K_mac, "cmd" || challenge || CLA INS P1 P2 || ciphertext)[:16]``;
  encrypt-then-MAC, so a bad MAC is refused before any decryption (6982);
* a successful response carries ``body || HMAC(K_mac, "rsp" || challenge ||
  header || body)[:16]`` so the key server knows the write really happened.

On a card that has a key-server trust anchor (``firmware/identity.py``) the
container commands are closed (6985): containers then arrive only through
TLS#2. SET PIN stays, and cards without an anchor keep the sealed path.

``K_enc`` and ``K_mac`` are derived from the 32-byte transport key set at
personalization. AES-CBC and HMAC-SHA256 are on every Java Card 3 platform.
The PSK therefore crosses the key host and any RACS server only encrypted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.container import KeyContainer
from firmware.apdu import ApduCommand
from firmware.dispatch import Route, route
from firmware.errors import (
    ConditionsNotSatisfiedError,
    IncorrectP1P2Error,
    SecurityStatusError,
    WrongDataError,
    WrongLengthError,
)
from firmware.identity import has_trust_anchor
from firmware.keyring import Keyring
from firmware.opening import Rng
from firmware.pin import CardPin
from firmware.store import Store

log = logging.getLogger(__name__)

KEY_BYTES = 32
CHALLENGE_BYTES = 16
MAC_BYTES = 16
CELL_TRANSPORT_KEY = "perso.tk"


class SealingKeys:
    """K_enc and K_mac for one transport key; the host side uses the same class."""

    __slots__ = ("_enc", "_mac")

    def __init__(self, transport_key: bytes) -> None:
        if len(transport_key) != KEY_BYTES:
            raise ValueError(f"a transport key is {KEY_BYTES} bytes")
        self._enc = hmac.digest(transport_key, b"elock/v1/perso-enc", hashlib.sha256)[:16]
        self._mac = hmac.digest(transport_key, b"elock/v1/perso-mac", hashlib.sha256)

    def __repr__(self) -> str:
        return "SealingKeys(<hidden>)"

    def mac(self, label: bytes, challenge: bytes, header: bytes, body: bytes) -> bytes:
        return hmac.digest(self._mac, label + challenge + header + body, hashlib.sha256)[:MAC_BYTES]

    def _cipher(self, challenge: bytes) -> Cipher[modes.CBC]:
        iv = hmac.digest(self._mac, b"iv" + challenge, hashlib.sha256)[:16]
        return Cipher(algorithms.AES(self._enc), modes.CBC(iv))

    def seal(self, challenge: bytes, header: bytes, plaintext: bytes) -> bytes:
        """Host side: the data field of a sealed command."""
        padded = plaintext + b"\x80" + b"\x00" * (15 - len(plaintext) % 16)
        enc = self._cipher(challenge).encryptor()
        ct = enc.update(padded) + enc.finalize()
        return ct + self.mac(b"cmd", challenge, header, ct)

    def unseal(self, challenge: bytes, header: bytes, data: bytes) -> bytes:
        """Card side: check the MAC in constant time, then decrypt and unpad."""
        ct, tag = data[:-MAC_BYTES], data[-MAC_BYTES:]
        if len(data) < MAC_BYTES + 16 or len(ct) % 16:
            raise WrongLengthError("sealed data has the wrong length")
        if not hmac.compare_digest(tag, self.mac(b"cmd", challenge, header, ct)):
            raise SecurityStatusError("sealed command MAC mismatch")
        dec = self._cipher(challenge).decryptor()
        padded = dec.update(ct) + dec.finalize()
        end = padded.rstrip(b"\x00")
        if not end.endswith(b"\x80"):
            raise WrongDataError("bad padding")
        return end[:-1]

    def check_response(self, challenge: bytes, header: bytes, data: bytes) -> bytes:
        """Host side: the response body, once its MAC is verified; raises ValueError."""
        body, tag = data[:-MAC_BYTES], data[-MAC_BYTES:]
        expected = self.mac(b"rsp", challenge, header, body)
        if len(data) < MAC_BYTES or not hmac.compare_digest(tag, expected):
            raise ValueError("the card's response MAC does not verify")
        return body


class Personalizer:
    def __init__(self, store: Store, keyring: Keyring, pin: CardPin, rng: Rng) -> None:
        self.store, self.keyring, self.pin, self.rng = store, keyring, pin, rng
        self.challenge: bytes | None = None

    def __repr__(self) -> str:
        return f"Personalizer(challenge_pending={self.challenge is not None})"

    def reset(self) -> None:
        self.challenge = None

    def _keys(self) -> SealingKeys:
        key = self.store.get(CELL_TRANSPORT_KEY)
        if key is None:
            raise ConditionsNotSatisfiedError("card has no transport key")
        return SealingKeys(key)

    def handle_get_challenge(self, cmd: ApduCommand) -> bytes:
        if cmd.p1p2:
            raise IncorrectP1P2Error("GET CHALLENGE takes P1 P2 00 00")
        if cmd.data or cmd.le != CHALLENGE_BYTES:
            raise WrongLengthError(f"GET CHALLENGE has no data and Le = {CHALLENGE_BYTES}")
        self._keys()
        self.challenge = self.rng(CHALLENGE_BYTES)
        return self.challenge

    def _unseal(
        self, cmd: ApduCommand, *, container: bool = False
    ) -> tuple[SealingKeys, bytes, bytes]:
        challenge, self.challenge = self.challenge, None  # spent, whatever happens next
        if container and has_trust_anchor(self.store):
            raise ConditionsNotSatisfiedError("containers arrive through TLS#2 on this card")
        if cmd.p1p2:
            raise IncorrectP1P2Error("sealed commands take P1 P2 00 00")
        keys = self._keys()
        if challenge is None:
            raise ConditionsNotSatisfiedError("GET CHALLENGE first")
        header = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2))
        plain = keys.unseal(challenge, header, cmd.data)
        return keys, challenge, plain

    def _answer(self, keys: SealingKeys, challenge: bytes, cmd: ApduCommand, body: bytes) -> bytes:
        header = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2))
        return body + keys.mac(b"rsp", challenge, header, body)

    def handle_put(self, cmd: ApduCommand) -> bytes:
        keys, challenge, plain = self._unseal(cmd, container=True)
        container_id = self.keyring.put(KeyContainer.from_tlv(plain))
        log.info("container %d installed", container_id)
        return self._answer(keys, challenge, cmd, bytes([container_id]))

    def handle_delete(self, cmd: ApduCommand) -> bytes:
        keys, challenge, plain = self._unseal(cmd, container=True)
        container_id = tlv.TlvReader(plain, (c.TAG_ID,)).uint(c.TAG_ID, 1)
        self.keyring.delete(container_id)
        log.info("container %d deleted", container_id)
        return self._answer(keys, challenge, cmd, bytes([container_id]))

    def handle_set_pin(self, cmd: ApduCommand) -> bytes:
        keys, challenge, plain = self._unseal(cmd)
        r = tlv.TlvReader(plain, (c.TAG_PIN, c.TAG_PIN_TRIES))
        self.pin.set(r.required(c.TAG_PIN), r.uint(c.TAG_PIN_TRIES, 1))
        log.info("card PIN set")
        return self._answer(keys, challenge, cmd, b"")

    def routes(self) -> list[Route]:
        sealed = (0x6982, 0x6985, 0x6A80, 0x6A86)
        doc = "docs/apdu.md#personalization"
        return [
            route(c.CLA_ISO, c.INS_GET_CHALLENGE, "GET CHALLENGE", self.handle_get_challenge,
                  (0x6985, 0x6A86), "ISO 7816-4 11.5.3"),
            route(c.CLA_SEALED, c.INS_PUT_CONTAINER, "PUT CONTAINER", self.handle_put,
                  (*sealed, 0x6A84), doc),
            route(c.CLA_SEALED, c.INS_DELETE_CONTAINER, "DELETE CONTAINER", self.handle_delete,
                  (*sealed, 0x6A82), doc),
            route(c.CLA_SEALED, c.INS_SET_PIN, "SET PIN", self.handle_set_pin, sealed, doc),
        ]  # fmt: skip
