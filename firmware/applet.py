"""The eLock applet: one entry point, ``process(command_apdu) -> response_apdu``.

Everything the card does goes through ``process``: parse strictly, find the
route for (CLA, INS), check the applet is selected, run the handler, and turn
the handler's data or its ``SwError`` into a response. Nothing else may escape:
an unexpected exception becomes 6F00 and drops the RAM state (a card would
reset), and is logged by type only, since its message could hold data.

RAM state (selection, a pending long response, the PIN's verified flag, the
personalization challenge, a running Open) is cleared by ``reset`` and by
SELECT; persistent state is only what the ``Store`` holds. That split is the
Java Card one (transient arrays versus EEPROM objects).

Long responses: the first chunk is at most Le (and ``max_response``) bytes; the
rest waits for GET RESPONSE and is announced as 61xx, as a T=0 card does.
Extended Le lets a host take up to ``max_response`` bytes in one exchange. A
handler may end its success with another 90xx (a ``Reply``: the TLS endpoint's
9001 / 9002); a chained answer ends with it on its last GET RESPONSE.

A card personalized with an identity (``firmware/identity.py``) also runs the
TLS#2 endpoint (``00 D8``, ``firmware/tls_apdu.py``) on the same ``Keyring``
that LIST and OPEN read, so a container pushed by the key server is one they see.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from elock_common import card_protocol as c
from elock_common.errors import FormatError
from firmware.apdu import ApduCommand
from firmware.dispatch import SW_OK, Registry, Reply, Route, route
from firmware.errors import (
    ClaNotSupportedError,
    ConditionsNotSatisfiedError,
    IncorrectP1P2Error,
    InsNotSupportedError,
    InternalError,
    NotFoundError,
    SwError,
    WrongDataError,
    WrongLengthError,
)
from firmware.identity import CardIdentity, CertificateCommand
from firmware.key_server import KeyServerCommand
from firmware.keyring import Keyring
from firmware.opening import Opener, Rng, SessionFactory, default_session_factory
from firmware.personalization import Personalizer
from firmware.pin import CardPin
from firmware.provisioning_channel import KeyringContainerStore
from firmware.store import Store
from firmware.tls_apdu import SW_TLS_END, SW_TLS_OPEN, TlsApduHandler
from firmware.tls_endpoint import TlsEndpoint

log = logging.getLogger(__name__)

MAX_RESPONSE = 4096  # bytes of data in one response; a Java Card APDU buffer is about this
MAX_COMMAND_DATA = c.MAX_COMMAND_DATA


class Component(Protocol):
    """A command family plugged into the applet (e.g. the TLS endpoint's APDUs)."""

    def routes(self) -> list[Route]: ...

    def reset(self) -> None:
        """Forget RAM state: called on reset, power-up and SELECT."""


class Applet:
    def __init__(
        self,
        store: Store,
        *,
        rng: Rng = secrets.token_bytes,
        session_factory: SessionFactory | None = None,
        max_response: int = MAX_RESPONSE,
        extensions: Sequence[Component] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keyring = Keyring(store)
        self.pin = CardPin(store)
        factory = session_factory or default_session_factory
        self.opener = Opener(self.keyring, self.pin, factory, rng)
        self.personalizer = Personalizer(store, self.keyring, self.pin, rng)
        self.max_response = max_response
        self.tls = _tls_component(store, self.keyring, rng, clock)
        self.extensions = (*extensions, *((self.tls,) if self.tls is not None else ()))
        self.selected = False
        self._pending = b""
        self._pending_sw = SW_OK
        self.registry = Registry()
        for entry in (
            *self._routes(),
            *CertificateCommand(store).routes(),
            *KeyServerCommand(store).routes(),
            *self.pin.routes(),
            *self.opener.routes(),
            *self.personalizer.routes(),
            *(r for ext in self.extensions for r in ext.routes()),
        ):
            self.registry.add(entry)

    def __repr__(self) -> str:
        return f"Applet(selected={self.selected}, {self.pin!r}, {self.opener!r})"

    def reset(self) -> None:
        """Power on, warm reset or a new SELECT: forget everything held in RAM."""
        self.selected = False
        self._clear_transient()

    def _clear_transient(self) -> None:
        self._pending = b""
        self.pin.reset()
        self.opener.reset()
        self.personalizer.reset()
        for ext in self.extensions:
            ext.reset()

    def process(self, command_apdu: bytes) -> bytes:
        """The card: one command APDU in, one response APDU out; never raises."""
        try:
            cmd = ApduCommand.parse(command_apdu)
            entry = self.registry.find(cmd.cla, cmd.ins)
            if entry is None:
                if self.registry.knows_class(cmd.cla):
                    raise InsNotSupportedError(f"INS {cmd.ins:02X}")
                raise ClaNotSupportedError(f"CLA {cmd.cla:02X}")
            if cmd.ins != c.INS_GET_RESPONSE:
                self._pending = b""
            if entry.needs_selection and not self.selected:
                raise ConditionsNotSatisfiedError("applet not selected")
            if len(cmd.data) > MAX_COMMAND_DATA:
                raise WrongLengthError("command data too long")
            result = entry.handler(cmd)
            if isinstance(result, Reply):
                response = self._respond(result.data, cmd.le, result.sw)
            else:
                response = self._respond(result, cmd.le)
        except SwError as exc:
            log.debug("%s -> %04X (%s)", _name(command_apdu), exc.sw, exc.reason)
            return exc.sw_bytes
        except FormatError as exc:  # a shared-format parser refused the host's data
            log.debug("%s -> 6A80 (%s)", _name(command_apdu), exc)
            return WrongDataError(str(exc)).sw_bytes
        except Exception as exc:  # a bug: answer like a card that caught it
            log.error("%s raised %s", _name(command_apdu), type(exc).__name__)
            self._clear_transient()
            return InternalError().sw_bytes
        log.debug("%s -> %s", _name(command_apdu), response[-2:].hex())
        return response

    def _respond(self, data: bytes, le: int | None, sw: int = SW_OK) -> bytes:
        limit = min(le or 0, self.max_response)
        first, rest = data[:limit], data[limit:]
        self._pending, self._pending_sw = rest, sw
        if rest:
            return first + bytes([0x61, min(len(rest), 256) & 0xFF])
        return first + sw.to_bytes(2, "big")

    def handle_select(self, cmd: ApduCommand) -> bytes:
        if cmd.p1 != c.P1_SELECT_BY_NAME or cmd.p2 not in (0x00, 0x0C):
            raise IncorrectP1P2Error("SELECT by DF name only, first or only occurrence")
        if cmd.data != c.AID:
            raise NotFoundError("not this applet's AID")  # the current selection stays
        self.reset()
        self.selected = True
        return b""

    def handle_get_response(self, cmd: ApduCommand) -> Reply:
        if cmd.p1p2:
            raise IncorrectP1P2Error("GET RESPONSE takes P1 P2 00 00")
        if cmd.data or cmd.le is None:
            raise WrongLengthError("GET RESPONSE is a case 2 command")
        if not self._pending:
            raise ConditionsNotSatisfiedError("no response waiting")
        return Reply(self._pending, self._pending_sw)

    def handle_list(self, cmd: ApduCommand) -> bytes:
        if cmd.p1p2:
            raise IncorrectP1P2Error("LIST takes P1 P2 00 00")
        if cmd.data:
            raise WrongLengthError("LIST takes no data")
        return b"".join(k.public_tlv() for k in self.keyring.all())

    def _routes(self) -> list[Route]:
        return [
            route(c.CLA_ISO, c.INS_SELECT, "SELECT", self.handle_select,
                  (0x6A82, 0x6A86), "ISO 7816-4 11.2.2", needs_selection=False),
            # A chained answer ends with its command's status (TLS RECORDS: 9001 / 9002).
            route(c.CLA_ISO, c.INS_GET_RESPONSE, "GET RESPONSE", self.handle_get_response,
                  (0x6985, 0x6A86, SW_TLS_OPEN, SW_TLS_END), "ISO 7816-4 11.7.1",
                  needs_selection=False),
            route(c.CLA_PROPRIETARY, c.INS_LIST, "LIST", self.handle_list,
                  (0x6A86,), "docs/apdu.md#list"),
        ]  # fmt: skip


def _tls_component(
    store: Store, keyring: Keyring, rng: Rng, clock: Callable[[], float]
) -> TlsApduHandler | None:
    """The TLS#2 endpoint on the applet's own keyring, if the card has an identity."""
    identity = CardIdentity.load(store)
    if identity is None:
        return None
    endpoint = TlsEndpoint(
        certificate_chain=[identity.certificate],
        private_key=identity.private_key,
        client_trust_anchor=identity.trust_anchor,
        store=KeyringContainerStore(keyring),
        rng=rng,
    )
    return TlsApduHandler(endpoint, clock)


def _name(apdu: bytes) -> str:
    return apdu[:4].hex() if len(apdu) >= 4 else "short APDU"
