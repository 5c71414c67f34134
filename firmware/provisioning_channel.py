"""The card's side of the provisioning protocol, sans-I/O, on an abstract store.

``ProvisioningChannel.receive(data) -> bytes`` takes decrypted TLS#2
application data (messages split anyhow; format in ``provisioning_wire``) and
returns the responses to send back. Commands are idempotent by container id:

- INSTALL of a free id: put, DONE. The same container again: UNCHANGED (a
  retried push is one container). A different container under that id:
  CONFLICT and the store is untouched (the key server meant REPLACE).
- REPLACE of a free id: NOT_FOUND. Identical: UNCHANGED. Otherwise put, DONE.
- DELETE of a free id: NOT_FOUND, distinct from DONE.
- LIST: DONE with one public entry per container (no PSK).
- A refused message gets its status (MALFORMED, INVALID_FIELD,
  UNKNOWN_COMMAND, TOO_LARGE) and the next message is read as usual. Only a
  broken TLV header ends the channel (``failed``): the stream has lost step.

Each command changes the store through one ``put`` or ``delete`` at most,
which the store makes atomic (the applet's journal does: ``firmware/store.py``).
"""

from __future__ import annotations

import hmac
import logging
from typing import Protocol

from elock_common.container import KeyContainer
from elock_common.provisioning_wire import (
    UNREADABLE,
    Command,
    FramingError,
    MessageSplitter,
    ProvisioningError,
    Request,
    Response,
    Status,
    decode_request,
    response_tag,
)
from firmware.errors import NotEnoughMemoryError, NotFoundError
from firmware.keyring import Keyring

logger = logging.getLogger(__name__)


class ContainerStoreError(Exception):
    """The store could not do what was asked; nothing was changed."""


class StoreFullError(ContainerStoreError):
    """No room for one more container."""


class ContainerStore(Protocol):
    """What the channel needs from the applet's persistent store."""

    def get(self, container_id: int) -> KeyContainer | None: ...

    def put(self, container: KeyContainer) -> None:
        """Insert or overwrite atomically: after a power cut, the old or the new one."""
        ...

    def delete(self, container_id: int) -> bool:
        """Remove atomically; False when there was nothing to remove."""
        ...

    def list(self) -> list[KeyContainer]: ...


class InMemoryContainerStore:
    """A ``ContainerStore`` for tests and the in-process demo."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._containers: dict[int, KeyContainer] = {}

    def __repr__(self) -> str:
        return f"InMemoryContainerStore(<{len(self._containers)} containers>)"

    def get(self, container_id: int) -> KeyContainer | None:
        return self._containers.get(container_id)

    def put(self, container: KeyContainer) -> None:
        full = len(self._containers) >= self.capacity
        if container.container_id not in self._containers and full:
            raise StoreFullError(f"the store holds {self.capacity} containers")
        self._containers[container.container_id] = container

    def delete(self, container_id: int) -> bool:
        return self._containers.pop(container_id, None) is not None

    def list(self) -> list[KeyContainer]:
        return [self._containers[key] for key in sorted(self._containers)]


class KeyringContainerStore:
    """The applet's tear-safe ``Keyring`` seen as a ``ContainerStore``."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def get(self, container_id: int) -> KeyContainer | None:
        try:
            return self._keyring.get(container_id)
        except NotFoundError:
            return None

    def put(self, container: KeyContainer) -> None:
        try:
            self._keyring.put(container)
        except NotEnoughMemoryError as exc:
            raise StoreFullError(exc.reason) from None

    def delete(self, container_id: int) -> bool:
        try:
            self._keyring.delete(container_id)
        except NotFoundError:
            return False
        return True

    def list(self) -> list[KeyContainer]:
        return self._keyring.all()


def same_container(a: KeyContainer, b: KeyContainer) -> bool:
    """Every field equal, the PSK compared in constant time."""
    return hmac.compare_digest(a.to_tlv(), b.to_tlv())


class ProvisioningChannel:
    """Commands in, responses out; holds at most one incomplete message."""

    def __init__(self, store: ContainerStore) -> None:
        self._store = store
        self._splitter = MessageSplitter()
        self.failed = False

    def __repr__(self) -> str:
        return f"ProvisioningChannel(failed={self.failed})"

    def receive(self, data: bytes) -> bytes:
        if self.failed:
            return b""
        try:
            messages = self._splitter.feed(data)
        except FramingError as exc:
            logger.warning("provisioning stream broken: %s", exc)
            self.failed = True
            return Response(UNREADABLE, exc.status, str(exc)).encode()
        return b"".join(self._answer(tag, value).encode() for tag, value in messages)

    def _answer(self, tag: int, value: bytes | None) -> Response:
        reply = response_tag(tag)
        if value is None:
            logger.warning("provisioning message 0x%02X too large: skipped", tag)
            return Response(reply, Status.TOO_LARGE, "message too large")
        try:
            request = decode_request(tag, value)
        except ProvisioningError as exc:
            logger.warning("provisioning message 0x%02X refused: %s", tag, exc)
            return Response(reply, exc.status, str(exc))
        try:
            return self._execute(reply, request)
        except StoreFullError as exc:
            return Response(reply, Status.STORE_FULL, str(exc))
        except ContainerStoreError as exc:
            logger.error("container store failed: %s", type(exc).__name__)
            return Response(reply, Status.STORE_ERROR, "store error")

    def _execute(self, reply: int, request: Request) -> Response:
        store, new = self._store, request.container
        if request.command is Command.LIST:
            entries = b"".join(k.public_tlv() for k in store.list())
            return Response(reply, Status.DONE, entries=entries)
        if request.command is Command.DELETE:
            found = store.delete(request.container_id)
            logger.info("DELETE container %d: %s", request.container_id, found)
            return Response(reply, Status.DONE if found else Status.NOT_FOUND)
        assert new is not None
        current = store.get(request.container_id)
        if current is not None and same_container(current, new):
            return Response(reply, Status.UNCHANGED)
        if request.command is Command.INSTALL and current is not None:
            return Response(reply, Status.CONFLICT, "another container has this id")
        if request.command is Command.REPLACE and current is None:
            return Response(reply, Status.NOT_FOUND)
        store.put(new)
        logger.info("%s container %d", request.command.name, request.container_id)
        return Response(reply, Status.DONE)
