"""``elock-phone``: serve the phone app for the card next to this host."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="elock-phone", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--reader", help="PC/SC reader name (default: the first with the eLock applet)"
    )
    parser.add_argument("--card", type=Path, help="an in-process card file instead of a reader")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="listen address (default: loopback only); requests must name it or a "
        "loopback name, with the port, in their Host header",
    )
    parser.add_argument("--port", type=int, default=8480)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per Open")
    args = parser.parse_args(argv)

    import uvicorn

    from key_client.cards import connect
    from key_client.phone.app import create_app, is_loopback, pairing_url, serving_names

    # Beyond loopback, any peer on the network can fetch the page, so the page does not
    # carry the secret: the owner opens the pairing address (secret in the fragment) once.
    local = is_loopback(args.host)
    session = secrets.token_urlsafe(32)
    app = create_app(
        lambda: connect(reader=args.reader, card_file=args.card),
        timeout=args.timeout,
        served=serving_names(args.host, args.port),
        session=session,
        page_secret=local,
    )
    print(f"eLock phone app on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    if not local:
        print(
            "listening beyond loopback: open this address once in the browser that will "
            f"use the app (keep it private; it is new at each start): "
            f"{pairing_url(args.host, args.port, session)}",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
