"""Where the card's key server is: a URL written at personalization, public like the labels.

A card in a phone cannot be reached by its key server (carrier NAT), so its
host dials out (``coap-open --sync``, the phone app). The host must learn
where to dial without a PIN and without trusting anything but the card, so
the address lives in the card: ``elock-se personalize --key-server URL``
writes it, KEY SERVER ``80 3A 00 00 Le`` reads it (6A88 when none).

The URL is not a secret and not a trust decision: whoever answers there must
still complete TLS#2 with a certificate from the key-server CA the card
holds, so a wrong or tampered address costs a failed sync, never a key.
"""

from __future__ import annotations

from elock_common import card_protocol as c
from firmware.apdu import ApduCommand
from firmware.dispatch import Route, route
from firmware.errors import IncorrectP1P2Error, ReferencedDataNotFoundError, WrongLengthError
from firmware.store import Store

CELL_KEY_SERVER = "ks.url"


class KeyServerUrlError(ValueError):
    """Personalization misuse: not an http(s) URL the card can hold."""


def check_url(url: str) -> bytes:
    """The URL as the card stores it (ASCII), or ``KeyServerUrlError`` saying why not."""
    if not url.isascii() or not url.isprintable() or " " in url:
        raise KeyServerUrlError("a key server URL is printable ASCII without spaces")
    if not url.startswith(("https://", "http://")):
        raise KeyServerUrlError("a key server URL starts with https:// (or http:// in a test)")
    if len(url) > c.MAX_KEY_SERVER_URL:
        raise KeyServerUrlError(f"a key server URL is at most {c.MAX_KEY_SERVER_URL} bytes")
    return url.encode("ascii")


def store_url(store: Store, url: str) -> None:
    with store.transaction() as tx:
        tx.put(CELL_KEY_SERVER, check_url(url))


class KeyServerCommand:
    """KEY SERVER: the stored URL, to anyone (no PIN, no selection of a container)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def handle_key_server(self, cmd: ApduCommand) -> bytes:
        if cmd.p1p2:
            raise IncorrectP1P2Error("KEY SERVER takes P1 P2 00 00")
        if cmd.data:
            raise WrongLengthError("KEY SERVER takes no data")
        url = self.store.get(CELL_KEY_SERVER)
        if url is None:
            raise ReferencedDataNotFoundError("the card names no key server")
        return url

    def routes(self) -> list[Route]:
        return [
            route(c.CLA_PROPRIETARY, c.INS_KEY_SERVER, "KEY SERVER", self.handle_key_server,
                  (0x6A86, 0x6A88), "docs/apdu.md#key-server"),
        ]  # fmt: skip
