"""Crashes the fuzzers found, each pinned by name (``test_fuzz.py`` replays the files too)."""

from __future__ import annotations

import pytest

from elock_common import IdentityFormatError, KeyIdentity, tlv
from elock_common.provisioning_wire import TAG_STATUS, Command, Status
from elock_push.errors import TlsSessionError
from elock_push.push import read_answers


def test_a_broken_tlv_header_from_the_card_is_a_tls_session_error() -> None:
    """atheris, target keyserver_answers: FramingError (not a ValueError) escaped the push."""
    with pytest.raises(TlsSessionError, match="unreadable answer"):
        read_answers(bytes.fromhex("23cd5d0a"), list_after=False)


def test_a_bad_list_entry_from_the_card_is_a_tls_session_error() -> None:
    """Same target: a malformed LIST entry raised ContainerFormatError outside the try."""
    status = tlv.encode(TAG_STATUS, bytes([Status.DONE]))
    answer = tlv.encode(Command.LIST.response_tag, status + tlv.encode(0xE1, b"\x01\x02"))
    with pytest.raises(TlsSessionError, match="unreadable answer"):
        read_answers(answer, list_after=True)
    empty_list = tlv.encode(Command.LIST.response_tag, status)
    responses, containers = read_answers(empty_list, list_after=True)
    assert len(responses) == 1 and containers == []


def test_a_padded_identity_is_an_identity_format_error() -> None:
    """atheris, target key_identity (see also tests/common/test_identity.py)."""
    with pytest.raises(IdentityFormatError):
        KeyIdentity.decode(b"JEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE=")
