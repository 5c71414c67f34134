"""The protocol inside TLS#2: idempotent commands, clear refusals, no PSK out."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.container import KeyContainer
from elock_common.provisioning_wire import (
    Command,
    MessageSplitter,
    Response,
    Status,
    decode_response,
    encode_delete,
    encode_install,
    encode_list,
    encode_replace,
)
from firmware.keyring import Keyring
from firmware.provisioning_channel import (
    ContainerStore,
    InMemoryContainerStore,
    KeyringContainerStore,
    ProvisioningChannel,
)
from firmware.store import Eeprom, Store

PSK = b"Zq3-kP0_vX8wYt2LmN5bRc7dHs9fJg4a"  # 32 characters, as the key format makes them


def container(container_id: int = 1, **changes: object) -> KeyContainer:
    base = KeyContainer(
        container_id=container_id,
        label="Front door",
        uri="coaps://lock.example:5684/open",
        identity=b"AQABAgMEBQYAAAAA_____wF_AAAFoAA",
        psk=PSK,
        not_before=1_700_000_000,
        not_after=1_900_000_000,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def responses(data: bytes) -> list[Response]:
    return [decode_response(tag, value or b"") for tag, value in MessageSplitter().feed(data)]


def one(channel: ProvisioningChannel, message: bytes) -> Response:
    (response,) = responses(channel.receive(message))
    return response


@pytest.fixture(params=["memory", "keyring"])
def store(request: pytest.FixtureRequest) -> ContainerStore:
    if request.param == "memory":
        return InMemoryContainerStore()
    return KeyringContainerStore(Keyring(Store(Eeprom())))  # the applet's tear-safe store


def test_install_is_idempotent(store: ContainerStore) -> None:
    channel = ProvisioningChannel(store)
    first = one(channel, encode_install(container()))
    assert (first.tag, first.status) == (Command.INSTALL.response_tag, Status.DONE)
    assert one(channel, encode_install(container())).status is Status.UNCHANGED
    assert [k.container_id for k in store.list()] == [1]
    assert store.get(1) == container()


def test_install_over_another_container_is_a_conflict(store: ContainerStore) -> None:
    channel = ProvisioningChannel(store)
    one(channel, encode_install(container()))
    refused = one(channel, encode_install(container(psk=b"another-psk")))
    assert refused.status is Status.CONFLICT
    assert store.get(1) == container()  # untouched


def test_replace(store: ContainerStore) -> None:
    channel = ProvisioningChannel(store)
    assert one(channel, encode_replace(container())).status is Status.NOT_FOUND
    one(channel, encode_install(container()))
    newer = container(label="Back door", not_after=1_950_000_000)
    assert one(channel, encode_replace(newer)).status is Status.DONE
    assert one(channel, encode_replace(newer)).status is Status.UNCHANGED
    assert store.get(1) == newer


def test_delete_distinguishes_absent(store: ContainerStore) -> None:
    channel = ProvisioningChannel(store)
    one(channel, encode_install(container()))
    assert one(channel, encode_delete(1)).status is Status.DONE
    assert one(channel, encode_delete(1)).status is Status.NOT_FOUND
    assert store.list() == []


def test_list_never_shows_a_psk(store: ContainerStore) -> None:
    channel = ProvisioningChannel(store)
    for i in (1, 2, 3):
        one(channel, encode_install(container(i, identity=b"identity-%d" % i)))
    answer = channel.receive(encode_list())
    assert PSK not in answer
    listed = responses(answer)[0]
    assert listed.status is Status.DONE
    assert [k.container_id for k in listed.containers()] == [1, 2, 3]
    assert all(k.psk == b"-" for k in listed.containers())


def test_messages_in_any_split_and_together() -> None:
    channel = ProvisioningChannel(InMemoryContainerStore())
    stream = (
        encode_install(container(1))
        + encode_install(container(2, identity=b"x"))
        + (encode_delete(1) + encode_list())
    )
    out = b"".join(channel.receive(stream[i : i + 1]) for i in range(len(stream)))
    assert [r.status for r in responses(out)] == [Status.DONE] * 4


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (tlv.encode(Command.INSTALL, b"\x80\x05\x01"), Status.MALFORMED),  # truncated field
        (tlv.encode(Command.DELETE, b""), Status.MALFORMED),  # no id
        (tlv.encode(Command.DELETE, b"\x80\x01\x01\x80\x01\x02"), Status.MALFORMED),  # twice
        (tlv.encode(Command.LIST, b"\x80\x01\x01"), Status.MALFORMED),
        (tlv.encode(0x42, b""), Status.UNKNOWN_COMMAND),
        (encode_delete(0), Status.INVALID_FIELD),
        (encode_delete(17), Status.INVALID_FIELD),
        (encode_install(container(0)), Status.INVALID_FIELD),  # the channel needs explicit ids
        (encode_install(container(psk=b"p" * 33)), Status.INVALID_FIELD),
        (
            tlv.encode(Command.INSTALL, container().to_tlv().replace(b"\x83\x1f", b"\x83\x21")),
            Status.MALFORMED,
        ),
    ],
    ids=[
        "truncated",
        "delete-without-id",
        "repeated-id",
        "list-with-fields",
        "unknown",
        "id-0",
        "id-17",
        "install-id-0",
        "psk-33",
        "length-overruns",
    ],
)
def test_refusals_have_a_clear_status(message: bytes, status: Status) -> None:
    store = InMemoryContainerStore()
    channel = ProvisioningChannel(store)
    answer = one(channel, message)
    assert answer.status is status and answer.detail
    assert store.list() == []
    assert one(channel, encode_list()).status is Status.DONE  # the channel goes on


def test_identity_over_32_bytes_is_refused() -> None:
    bad = (
        container()
        .to_tlv()
        .replace(
            tlv.encode(c.TAG_IDENTITY, container().identity), tlv.encode(c.TAG_IDENTITY, b"i" * 33)
        )
    )
    answer = one(ProvisioningChannel(InMemoryContainerStore()), tlv.encode(Command.INSTALL, bad))
    assert answer.status is Status.INVALID_FIELD and "identity" in answer.detail


def test_too_large_is_skipped_and_the_stream_stays_in_step() -> None:
    channel = ProvisioningChannel(InMemoryContainerStore())
    huge = tlv.encode(Command.INSTALL, bytes(5000))
    out = channel.receive(huge[:100]) + channel.receive(huge[100:] + encode_list())
    assert [r.status for r in responses(out)] == [Status.TOO_LARGE, Status.DONE]


def test_broken_framing_ends_the_channel() -> None:
    channel = ProvisioningChannel(InMemoryContainerStore())
    answer = one(channel, b"\xff\x00")
    assert answer.status is Status.MALFORMED and channel.failed
    assert channel.receive(encode_list()) == b""


def test_store_full() -> None:
    channel = ProvisioningChannel(InMemoryContainerStore(capacity=1))
    one(channel, encode_install(container(1)))
    answer = one(channel, encode_install(container(2, identity=b"other")))
    assert answer.status is Status.STORE_FULL


def test_reprs_hide_the_psk() -> None:
    store = InMemoryContainerStore()
    store.put(container())
    assert PSK.decode() not in repr(store) + repr(container()) + repr(ProvisioningChannel(store))


@given(st.binary(max_size=400))
def test_any_bytes_get_answers_never_exceptions_nor_psks(data: bytes) -> None:
    store = InMemoryContainerStore()
    store.put(container())
    channel = ProvisioningChannel(store)
    answer = channel.receive(data) + channel.receive(encode_list())
    assert PSK not in answer
    for response in responses(answer) if not channel.failed else []:
        assert response.status in Status
