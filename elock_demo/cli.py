"""``elock``: the umbrella command. ``elock demo`` tells the system's story by running it.

Every step runs the real programs (key server, lock, virtual card, coap-open)
on loopback and prints what happened and how long it took. The exit status
says whether the story held; everything started is stopped at the end unless
``--keep`` is given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from elock_demo import pki_cli
from elock_demo.services import Running, StoryBrokenError
from elock_demo.story import tell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="elock", description="eLock umbrella command")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the whole story on loopback")
    demo.add_argument("--keep", action="store_true", help="leave everything running at the end")
    demo.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    demo.set_defaults(func=run_demo)
    pki_cli.add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


class Story:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.count = 0

    def step(self, title: str, action: Callable[[], str]) -> str:
        self.count += 1
        began = time.monotonic()
        print(f"[{self.count}] {title} ...", flush=True)
        result = action()
        print(f"    {result}  ({(time.monotonic() - began) * 1000:.0f} ms)", flush=True)
        return result

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def run_demo(args: argparse.Namespace) -> int:
    if shutil.which("coap-client-openssl") is None:
        print("elock demo: coap-client-openssl is missing; run scripts/install.sh", file=sys.stderr)
        return 2
    work = args.dir or Path(tempfile.mkdtemp(prefix="elock-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    story, services = Story(), list[Running]()
    keep = args.keep
    try:
        notes = tell(story, work, services, detach=keep)
    except StoryBrokenError as exc:
        print(f"\nThe story broke: {exc}", file=sys.stderr)
        keep = False
        return 1
    finally:
        if not keep:
            for service in reversed(services):
                service.stop()
    print(f"\nThe story held: {story.count} steps in {story.elapsed():.2f} s.")
    if keep:
        _print_keep(services, notes)
    return 0


def _print_keep(services: list[Running], notes: dict[str, str]) -> None:
    print("\nStill running:")
    for service in services:
        pid = service.proc.pid if service.proc else "not ours"
        print(f"  {service.name}: pid {pid}, log {service.log_path}")
    print(f"\nAPI docs:   {notes['api']}/docs  (Authorize with the token in {notes['token_file']})")
    print(f"Phone app:  .venv/bin/elock-phone --reader '{notes['reader']}'"
          "  then open http://127.0.0.1:8480/ and press Open")  # fmt: skip
    print("            (its key 'Back door' was pushed into the card by the key server)")
    pids = " ".join(str(s.proc.pid) for s in services if s.proc)
    print(f"Stop all:   kill {pids}")


if __name__ == "__main__":
    sys.exit(main())
