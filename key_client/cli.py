"""``coap-open``: open a door with a key held in a secure element.

    coap-open                    the only key in the card
    coap-open "Front door"       a key by label
    coap-open coaps://door/lock  a key by lock URI
    coap-open --list             the keys in the card (never a PSK)
    coap-open --sync             take new keys from the card's key server, drop revoked ones

A key that needs the PIN asks for it on the terminal; without one, give it
through a file descriptor (--pin-fd 3 3<pinfile, or a pipe) or an environment
variable you name (--pin-env VAR). Never on the command line: ps shows that.

Exit status: 0 opened, 3 refused by the lock, 4 lock unreachable (the door
did not open), 7 unknown (the request went out, no answer came: the door may
be open; check before trying again), 5 card problem (missing, blocked, wrong
PIN), 6 no such key, 8 sync failed (key server unreachable, refused, or some
keys failed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from pathlib import Path

from elock_common.pin_input import PIN_IN_ARGV, PinInputError, add_pin_options, read_pin
from key_client.cards import AppletChannel, connect
from key_client.carrier import DEFAULT_RETRANSMIT, DEFAULT_TIMEOUT, open_door
from key_client.channel import KeyInfo
from key_client.errors import KeyHostError, NoSuchKeyError, PinRequiredError, SyncError
from key_client.sync import sync_card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="coap-open",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("target", nargs="?", help="key label or lock URI")
    parser.add_argument("--list", action="store_true", help="list the keys in the card")
    parser.add_argument(
        "--sync", action="store_true", help="dial the card's key server and take its keys"
    )
    parser.add_argument(
        "--reader", help="PC/SC reader name (default: the first with the eLock applet)"
    )
    parser.add_argument("--card", type=Path, help="an in-process card file instead of a reader")
    add_pin_options(parser, what="the PIN")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default 20)"
    )
    parser.add_argument(
        "--retransmit-ms",
        type=int,
        default=round(DEFAULT_RETRANSMIT * 1000),
        help="the card's first DTLS retransmission timeout, 1..65535 ms (default 250); "
        "the card then follows the round trips it measures",
    )
    args = parser.parse_args(argv)
    if args.pin not in (None, "-"):  # "--pin -" (ask) is harmless and kept
        parser.error(PIN_IN_ARGV)
    if not 1 <= args.retransmit_ms <= 0xFFFF:
        parser.error("--retransmit-ms must be 1..65535")
    try:
        return _run(args)
    except KeyHostError as exc:
        _report(args, {"status": _status(exc), "message": str(exc)})
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.sync:
        return _sync(args)
    with connect(reader=args.reader, card_file=args.card) as channel:  # closed after use
        return _use(args, channel)


def _use(args: argparse.Namespace, channel: AppletChannel) -> int:
    keys = channel.keys()
    if args.list:
        if args.json:
            print(json.dumps([vars(k) for k in keys]))
        for key in [] if args.json else keys:
            pin = " (PIN)" if key.pin_required else ""
            print(f"{key.container_id:3}  {key.label:24} {key.uri}{pin}")
        return 0
    key = _choose(keys, args.target)
    if key.pin_required:
        channel.verify_pin(_pin_for(key, args))
    spinner = _Spinner(enabled=sys.stderr.isatty() and not args.json)
    try:
        outcome = asyncio.run(
            open_door(
                channel,
                key,
                timeout=args.timeout,
                retransmit=args.retransmit_ms / 1000,
                progress=spinner.stage,
            )
        )
    finally:
        spinner.stop()
    _report(
        args,
        {
            "status": "opened",
            "label": key.label,
            "uri": key.uri,
            "code": outcome.code,
            "message": outcome.message,
            "elapsed_ms": round(outcome.elapsed * 1000, 1),
            "apdu_exchanges": outcome.exchanges,
        },
    )
    return 0


def _sync(args: argparse.Namespace) -> int:
    """Dial the key server the card names; it installs and deletes through TLS#2."""
    with connect(reader=args.reader, card_file=args.card) as channel:
        key_server = channel.key_server()
        spinner = _Spinner(enabled=sys.stderr.isatty() and not args.json)
        try:
            result = asyncio.run(
                sync_card(channel.relay, key_server, timeout=args.timeout, progress=spinner.stage)
            )
        finally:
            spinner.stop()
    _report(args, {"status": "synced", "key_server": key_server, "message": result.message,
                   **vars(result)})  # fmt: skip
    return 0 if not result.failed else SyncError.exit_status


def _pin_for(key: KeyInfo, args: argparse.Namespace) -> str:
    try:
        pin = read_pin(fd=args.pin_fd, env_var=args.pin_env, prompt=f"PIN for {key.label}: ")
    except PinInputError as exc:
        raise PinRequiredError(str(exc)) from None
    if not pin:
        raise PinRequiredError(
            f"{key.label} needs the PIN: type it on a terminal, or use --pin-fd N or --pin-env VAR"
        )
    return pin


def _choose(keys: list[KeyInfo], target: str | None) -> KeyInfo:
    if target is None:
        if len(keys) == 1:
            return keys[0]
        raise NoSuchKeyError(f"the card holds {len(keys)} keys: name one (coap-open --list)")
    found = [k for k in keys if target in (k.label, k.uri)]
    if len(found) != 1:
        raise NoSuchKeyError(f"{'no' if not found else 'more than one'} key matches {target!r}")
    return found[0]


def _status(exc: KeyHostError) -> str:
    statuses = {3: "refused", 4: "unreachable", 5: "card", 6: "no-such-key", 7: "unknown"}
    statuses[8] = "sync"
    return statuses.get(exc.exit_status, "error")


def _report(args: argparse.Namespace, result: dict[str, object]) -> None:
    if args.json:
        print(json.dumps(result))
    elif result["status"] == "opened":
        print(f"opened {result['label']} ({result['elapsed_ms']} ms)")
    elif result["status"] == "synced":
        print(f"synced with {result['key_server']}: {result['message']}")
    else:
        print(f"coap-open: {result['message']}", file=sys.stderr)


class _Spinner:
    """A progress line on a terminal while a slow card runs the handshake."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._frames = itertools.cycle("|/-\\")

    def stage(self, name: str) -> None:
        if self._enabled:
            print(
                f"\r{next(self._frames)} {name}...{' ' * 20}", end="", file=sys.stderr, flush=True
            )

    def stop(self) -> None:
        if self._enabled:
            print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
