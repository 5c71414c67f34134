"""``elock-se``: make, serve and manage a virtual eLock card.

``personalize`` writes a new card file (the card's EEPROM image) with a random
transport key, an optional PIN and, with ``--seid``, the card's TLS#2
identity: a P-256 key made in the card's store (only its public key comes
out), its certificate from the secure-element issuer CA (CN = SEID), and the
key-server CA as trust anchor; such a card takes containers only through
TLS#2. ``--key-server URL`` stores where its host dials to sync (public).
``certificate`` prints the card's certificate (PEM); ``serve`` puts it in
pcscd's vpcd reader;
``list``, ``install`` and ``delete`` talk APDUs to it, in process on the card
file or, with ``--reader``, through PC/SC to a served card. ``install`` and
``delete`` go through the sealed personalization APDUs, so the CLI exercises
the same path a key server uses. A PSK is read from a file or stdin, never
printed; ``list`` shows everything but PSKs (the card cannot return them).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from elock_common import pki
from elock_common.container import NO_NOT_AFTER, Flags, KeyContainer
from elock_common.errors import FormatError
from elock_common.pin_input import PIN_IN_ARGV, PinInputError, add_pin_options, read_pin
from firmware import identity, key_server
from firmware.applet import Applet
from firmware.errors import SwError
from firmware.personalization import CELL_TRANSPORT_KEY, KEY_BYTES
from firmware.pin import CardPin
from firmware.store import Eeprom, Store
from firmware.virtual import cardfile, host
from firmware.virtual.vpcd import DEFAULT_HOST, DEFAULT_PORT, VirtualCard

log = logging.getLogger("elock-se")


class CliError(Exception):
    pass


@contextlib.contextmanager
def card_lock(card: Path) -> Iterator[None]:
    """One user of a card file at a time; ``serve`` holds this while it runs."""
    lock_path = card.with_name(card.name + ".lock")
    with open(lock_path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(f"{card} is in use (served?); use --reader to reach it") from None
        yield


def read_transport_key(path: Path) -> bytes:
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != KEY_BYTES:
        raise CliError(f"{path}: a transport key is {KEY_BYTES} bytes of hex")
    return key


def cmd_personalize(args: argparse.Namespace) -> None:
    card: Path = args.card
    if card.exists() and not args.force:
        raise CliError(f"{card} exists; pass --force to replace it")
    if args.key_server is not None:
        key_server.check_url(args.key_server)
    tk_file: Path | None = args.transport_key_file
    if tk_file is not None and tk_file.exists():
        transport_key = read_transport_key(tk_file)
    else:
        transport_key = secrets.token_bytes(KEY_BYTES)
        if tk_file is not None:
            tk_file.touch(mode=0o600)
            tk_file.write_text(transport_key.hex() + "\n")
    with card_lock(card):
        store = Store(Eeprom())
        with store.transaction() as tx:
            tx.put(CELL_TRANSPORT_KEY, transport_key)
        pin = _new_pin(args)
        if pin is not None:
            CardPin(store).set(pin.encode("ascii"), args.pin_tries)
        seid = _personalize_identity(args, store)
        if args.key_server is not None:
            key_server.store_url(store, args.key_server)
        cardfile.save(card, store.eeprom)
    extra = (" with a PIN" if pin else "") + (f" as SEID {seid}" if seid else "")
    extra += f", key server {args.key_server}" if args.key_server else ""
    print(f"personalized {card}{extra}")


def _new_pin(args: argparse.Namespace) -> str | None:
    """The card PIN from --pin-fd, --pin-env or --pin-prompt; never from argv."""
    if args.pin is not None:
        raise CliError(PIN_IN_ARGV)
    try:
        pin = read_pin(
            fd=args.pin_fd,
            env_var=args.pin_env,
            prompt="card PIN: " if args.pin_prompt else None,
        )
        if pin is not None and args.pin_prompt and args.pin_fd is None and args.pin_env is None:
            if read_pin(fd=None, env_var=None, prompt="card PIN again: ") != pin:
                raise CliError("the two PINs differ")
    except PinInputError as exc:
        raise CliError(str(exc)) from None
    if args.pin_prompt and pin is None:
        raise CliError("--pin-prompt needs a terminal")
    return pin


IDENTITY_OPTIONS = ("seid", "issuer_cert", "issuer_key", "key_server_ca")


def _personalize_identity(args: argparse.Namespace, store: Store) -> str | None:
    """With --seid: the card makes its key, the issuer CA certifies it; None without."""
    given = [name for name in IDENTITY_OPTIONS if getattr(args, name) is not None]
    if not given:
        return None
    if len(given) != len(IDENTITY_OPTIONS):
        raise CliError("--seid, --issuer-cert, --issuer-key and --key-server-ca go together")
    seid: str = args.seid
    if not pki.SEID_RE.fullmatch(seid):
        raise CliError(f"{seid!r} is not a valid SEID")
    try:
        issuer_cert = pki.load_certificate(args.issuer_cert)
        issuer_key = pki.load_private_key(args.issuer_key)
        anchor = pki.load_certificate(args.key_server_ca)
    except (ValueError, pki.PkiError) as exc:
        raise CliError(f"cannot load the PKI files: {exc}") from None
    public_key = identity.generate_key(store)  # in the card; the private key stays there
    certificate = pki.issue_se_certificate(issuer_cert, issuer_key, public_key, seid, time.time())
    identity.install_certificate(store, certificate, anchor)
    return seid


def cmd_certificate(args: argparse.Namespace) -> None:
    with transmitter(args) as (transmit, _):
        der = host.card_certificate(transmit)
    print(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode())


@contextlib.contextmanager
def transmitter(args: argparse.Namespace) -> Iterator[tuple[host.Transmit, bytes | None]]:
    """A transmit function to the card, and the transport key when the card file is at hand."""
    if args.reader:
        transmit, close = host.pcsc_transmit(args.reader)
        try:
            host.select(transmit)
            yield transmit, None
        finally:
            close()
        return
    card: Path = args.card
    with card_lock(card):
        eeprom = cardfile.load(card)
        applet = Applet(Store(eeprom))
        try:
            host.select(applet.process)
            yield applet.process, eeprom.read(CELL_TRANSPORT_KEY)
        finally:
            if eeprom.dirty:  # a refused command may still have spent a PIN try
                cardfile.save(card, eeprom)


def _transport_key(args: argparse.Namespace, from_card: bytes | None) -> bytes:
    if args.transport_key_file is not None:
        return read_transport_key(args.transport_key_file)
    if from_card is None:
        raise CliError("--transport-key-file is needed to reach a card through a reader")
    return from_card


def cmd_list(args: argparse.Namespace) -> None:
    with transmitter(args) as (transmit, _):
        containers = host.list_containers(transmit)
    if not containers:
        print("no containers")
    for k in containers:
        after = "-" if k.not_after == NO_NOT_AFTER else str(k.not_after)
        pin = " pin" if k.pin_required else ""
        print(f"{k.container_id:3d}  {k.label!r}  {k.uri}  id={k.identity.decode()}"
              f"  valid={k.not_before}..{after}{pin}")  # fmt: skip


def _read_psk(args: argparse.Namespace) -> bytes:
    if args.psk_file is not None:
        return Path(args.psk_file).read_bytes().strip()
    if args.psk_stdin:
        return sys.stdin.buffer.readline().strip()
    if args.psk is not None:
        return str(args.psk).encode("ascii")
    raise CliError("give the PSK with --psk, --psk-file or --psk-stdin")


def cmd_install(args: argparse.Namespace) -> None:
    flags = Flags.PIN_REQUIRED if args.pin_required else Flags.NONE
    container = KeyContainer(
        args.id, args.label, args.uri, args.identity.encode("ascii"), _read_psk(args),
        args.not_before, args.not_after, flags,
    )  # fmt: skip
    with transmitter(args) as (transmit, key):
        container_id = host.install(transmit, _transport_key(args, key), container)
    print(f"installed container {container_id}")


def cmd_delete(args: argparse.Namespace) -> None:
    with transmitter(args) as (transmit, key):
        host.delete(transmit, _transport_key(args, key), args.id)
    print(f"deleted container {args.id}")


def cmd_serve(args: argparse.Namespace) -> None:
    card: Path = args.card
    with card_lock(card):
        eeprom = cardfile.load(card)
        applet = Applet(Store(eeprom))

        def save() -> None:
            if eeprom.dirty:
                cardfile.save(card, eeprom)

        vcard = VirtualCard(applet, host=args.host, port=args.port, after_apdu=save)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            vcard.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"serving {card} to vpcd at {args.host}:{args.port}", flush=True)
        worker = threading.Thread(target=vcard.run, name="vpcd", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elock-se", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def card_cmd(name: str, help_text: str, reader: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--card", type=Path, default=Path("card.json"), help="the card file")
        if reader:
            p.add_argument("--reader", help='talk to a served card, e.g. "Virtual PCD 00 00"')
        return p

    p = card_cmd("personalize", "create a card file", reader=False)
    add_pin_options(p, what="a card PIN (4 to 8 digits)")
    p.add_argument(
        "--pin-prompt", action="store_true", help="ask for a card PIN on the terminal (twice)"
    )
    p.add_argument("--pin-tries", type=int, default=3)
    p.add_argument("--transport-key-file", type=Path, help="read it, or write a new one")
    p.add_argument("--force", action="store_true", help="replace an existing card file")
    p.add_argument("--seid", help="give the card a TLS#2 identity with this SEID as CN")
    p.add_argument("--issuer-cert", type=Path, help="the secure-element issuer CA (PEM)")
    p.add_argument("--issuer-key", type=Path, help="its private key (PEM)")
    p.add_argument("--key-server-ca", type=Path, help="trust anchor for TLS#2 client certs")
    p.add_argument(
        "--key-server", help="URL the card's host dials to sync (https://...; readable by anyone)"
    )
    p.set_defaults(func=cmd_personalize)

    p = card_cmd("serve", "put the card in pcscd's vpcd reader", reader=False)
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.set_defaults(func=cmd_serve)

    card_cmd("list", "list the containers (never a PSK)").set_defaults(func=cmd_list)
    card_cmd("certificate", "print the card's certificate (PEM)").set_defaults(func=cmd_certificate)

    for name, func in (("install", cmd_install), ("delete", cmd_delete)):
        p = card_cmd(name, f"{name} a container through the sealed APDUs")
        p.add_argument("--transport-key-file", type=Path)
        p.set_defaults(func=func)
        if name == "delete":
            p.add_argument("--id", type=int, required=True)
            continue
        p.add_argument("--id", type=int, default=0, help="container id (0: card chooses)")
        p.add_argument("--label", required=True)
        p.add_argument("--uri", required=True, help="coaps://host[:port]/path")
        p.add_argument("--identity", required=True)
        p.add_argument("--psk", help="the PSK itself (visible in ps: prefer a file or stdin)")
        p.add_argument("--psk-file", type=Path)
        p.add_argument("--psk-stdin", action="store_true")
        p.add_argument("--not-before", type=int, default=0)
        p.add_argument("--not-after", type=int, default=NO_NOT_AFTER)
        p.add_argument("--pin-required", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr)
    try:
        args.func(args)
    except (
        CliError, cardfile.CardFileError, host.CardError, FormatError, OSError,
        identity.IdentityError, key_server.KeyServerUrlError,
    ) as exc:  # fmt: skip
        print(f"elock-se: {exc}", file=sys.stderr)
        return 1
    except SwError as exc:
        print(f"elock-se: refused ({exc.sw:04X}): {exc.reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
