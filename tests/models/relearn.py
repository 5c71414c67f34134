"""Learn the handshake models again and write them to docs/models/ (by hand, not in CI).

    .venv/bin/python -m tests.models.relearn [dtls-client tls13-server lock-server]

For each model: ``NAME.dot`` (full alphabet, the reviewed model), ``NAME-small.dot``
(the alphabet CI re-learns), ``NAME.svg`` (``dot -Tsvg``, graphviz) and the
learning statistics in ``stats.json``. A model that changed shows up as a diff;
check it against the properties (``pytest tests/models``) before committing it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.models.learning import learn
from tests.models.targets import DTLS_CLIENT, MODELS, TLS13_SERVER, Target, lock_target


@contextmanager
def running_lock() -> Iterator[Target]:
    from elock_testkit.lockproc import LockProcess

    with tempfile.TemporaryDirectory() as tmp:
        with LockProcess.create(Path(tmp) / "lock", open_seconds=0.2) as lock:
            key = lock.mint()
            yield lock_target(
                lock.port, (key.identity.encode(), key.psk.encode()), lock.data_dir / "relay.log"
            )


def relearn(target: Target, stats: dict[str, object], which: tuple[bool, ...]) -> None:
    for small in which:
        alphabet = target.small_alphabet if small else target.alphabet
        bound = target.ci_bound if small else target.bound
        sul = target.make_sul()
        try:
            model, numbers = learn(target.name, sul, alphabet, bound, target.spec)
        finally:
            close = getattr(sul, "close", None)
            if close is not None:
                close()
        (MODELS / target.file(small)).write_text(model.to_dot())
        stats[target.file(small)] = numbers.as_dict()
        print(numbers, flush=True)
    dot = shutil.which("dot")
    if dot is None:
        sys.exit("graphviz's dot is not installed (scripts/system-packages/models.txt)")
    subprocess.run(
        [dot, "-Tsvg", str(MODELS / target.file()), "-o", str(MODELS / f"{target.name}.svg")],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["dtls-client", "tls13-server", "lock-server"])
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--small", action="store_true", help="only the small alphabets")
    only.add_argument("--full", action="store_true", help="only the full alphabets")
    args = parser.parse_args()
    which = (True,) if args.small else (False,) if args.full else (False, True)
    MODELS.mkdir(parents=True, exist_ok=True)
    stats_path = MODELS / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    for name in args.models:
        if name == "lock-server":
            with running_lock() as target:
                relearn(target, stats, which)
        else:
            target = {"dtls-client": DTLS_CLIENT, "tls13-server": TLS13_SERVER}[name]
            relearn(target, stats, which)
        stats_path.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
