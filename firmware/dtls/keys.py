"""The handshake hash, and the keys the DTLS client derives from it (RFC 5246 8.1, RFC 7627).

Kept apart so the secrets have one short home: the master secret exists only
inside ``derive``, and the PSK is passed in, not kept (the client drops its copy as
soon as ``derive`` returns). Nothing here shows a key in a repr.

The hash covers whole handshake messages in their DTLS form. It starts at the
ClientHello that carries the cookie (RFC 6347 4.2.1): ``restart`` is called with
every ClientHello we send, and again when a server starts over with a new
ServerHello.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes

from firmware.dtls.errors import DecryptError
from firmware.dtls.fragments import push_handshake
from firmware.dtls.messages import FINISHED, Finished, push_finished
from firmware.dtls.records import (
    CcmProtection,
    KeyBlock,
    extended_master_secret,
    finished_verify_data,
    master_secret,
    psk_premaster_secret,
)


@dataclass(frozen=True, slots=True)
class EpochKeys:
    """What epoch 1 needs: both directions' protection, and our Finished to send in it."""

    write: CcmProtection = field(repr=False)
    read: CcmProtection = field(repr=False)
    finished: bytes  # the whole Finished message, already in the handshake hash


class KeySchedule:
    __slots__ = (
        "_expected_server_verify",
        "_transcript",
        "client_random",
        "extended_master_secret",
        "server_random",
    )

    def __init__(self) -> None:
        self._transcript = hashes.Hash(hashes.SHA256())
        self.client_random = b""
        self.server_random = b""
        self.extended_master_secret = False  # the server echoed RFC 7627's extension
        self._expected_server_verify: bytes | None = None

    def restart(self, client_hello: bytes) -> None:
        self._transcript = hashes.Hash(hashes.SHA256())
        self._transcript.update(client_hello)

    def update(self, message: bytes) -> None:
        self._transcript.update(message)

    def _hash(self) -> bytes:
        return self._transcript.copy().finalize()

    def derive(self, psk: bytes, client_key_exchange: bytes, finished_seq: int) -> EpochKeys:
        """Hash our ClientKeyExchange, derive the keys, and write our Finished."""
        self._transcript.update(client_key_exchange)
        premaster = psk_premaster_secret(psk)
        if self.extended_master_secret:  # RFC 7627 4: bound to the whole handshake so far
            master = extended_master_secret(premaster, self._hash())
        else:
            master = master_secret(premaster, self.client_random, self.server_random)
        keys = KeyBlock.derive(master, self.client_random, self.server_random)
        verify = finished_verify_data(master, b"client finished", self._hash())
        finished = push_handshake(FINISHED, finished_seq, push_finished(Finished(verify)))
        self._transcript.update(finished)
        self._expected_server_verify = finished_verify_data(
            master, b"server finished", self._hash()
        )
        del master
        return EpochKeys(
            write=CcmProtection(keys.client_write_key, keys.client_write_iv),
            read=CcmProtection(keys.server_write_key, keys.server_write_iv),
            finished=finished,
        )

    def verify_server_finished(self, finished: Finished) -> None:
        """Raises, never returns a bool, and compares in constant time."""
        expected = self._expected_server_verify
        if expected is None or not hmac.compare_digest(finished.verify_data, expected):
            raise DecryptError("server Finished does not verify")
        self._expected_server_verify = None
