"""KEY SERVER: the URL a card's host dials to sync, public, written at personalization."""

from __future__ import annotations

from pathlib import Path

import pytest

from elock_common import card_protocol as c
from firmware.apdu import command
from firmware.key_server import KeyServerUrlError, check_url, store_url
from firmware.virtual import cardfile
from firmware.virtual.cli import main
from key_client.cards import connect
from tests.firmware.helpers import make_card

KEY_SERVER = command(c.CLA_PROPRIETARY, c.INS_KEY_SERVER, le=256)


def test_the_url_is_read_without_a_pin() -> None:
    card = make_card(pin=b"1234")
    assert card.tx(KEY_SERVER) == bytes.fromhex("6A88")  # none stored
    store_url(card.applet.store, "https://keys.example.net")
    assert card.tx(KEY_SERVER) == b"https://keys.example.net\x90\x00"


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        (command(c.CLA_PROPRIETARY, c.INS_KEY_SERVER, 0, 1, le=256), "6A86"),
        (command(c.CLA_PROPRIETARY, c.INS_KEY_SERVER, data=b"x", le=256), "6700"),
    ],
)
def test_malformed_requests_are_refused(apdu: bytes, sw: str) -> None:
    card = make_card()
    store_url(card.applet.store, "http://127.0.0.1:8000")
    assert card.tx(apdu) == bytes.fromhex(sw)


@pytest.mark.parametrize(
    "url", ["ftp://x", "https://a b", "https://é.example", "https://" + "a" * 200, ""]
)
def test_only_http_urls_the_card_can_hold(url: str) -> None:
    with pytest.raises(KeyServerUrlError):
        check_url(url)


def test_personalize_stores_it_and_the_host_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = tmp_path / "card.json"
    url = "http://127.0.0.1:8443"
    assert main(["personalize", "--card", str(card), "--key-server", url]) == 0
    assert f"key server {url}" in capsys.readouterr().out
    assert cardfile.load(card).read("ks.url") == url.encode()
    with connect(card_file=card) as channel:
        assert channel.key_server() == url
    bad = tmp_path / "bad.json"
    assert main(["personalize", "--card", str(bad), "--key-server", "gopher://x"]) == 1
    assert "https://" in capsys.readouterr().err and not bad.exists()
