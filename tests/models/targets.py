"""The three systems under learning, each with its alphabets, bounds and committed model.

``python -m tests.models.relearn`` learns them and writes ``docs/models/``; the
tests in this directory learn them again and compare. A lock target needs a
running lock: ``lock_target`` takes its port, key and relay log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aalpy.base import SUL

from tests.models import dtls_client_sul, lock_sul, tls13_sul
from tests.models.learning import Bound
from tests.models.mealy import Model, parse_dot
from tests.models.properties import Spec

MODELS = Path(__file__).resolve().parents[2] / "docs" / "models"

# In-process SULs answer in well under a millisecond: the W-method for one state
# more than the hypothesis is affordable, and learning ends when it finds nothing.
# The lock answers over UDP in milliseconds a step, and counts (its replay budget, the
# client flights it remembers), so its exact model is long. It is learned for a bounded
# number of rounds and the hypothesis committed. Every equivalence query first asks the
# lock the words on which the hypothesis breaks a property (learning.py), so a violation
# left in a committed model is the lock's, not the hypothesis's. The full alphabet takes
# seeded random W walks between 12 rounds; CI re-learns the small alphabet, 10 rounds with
# the W-method for one state more between them (random walks found 2 states there).
# docs/testing.md says what that does and does not prove.
EXHAUSTIVE = Bound(extra_states=1, repeats=6)
LOCK_FULL = Bound(extra_states=None, walks_per_state=5, walk_len=8, repeats=1, max_rounds=12)
LOCK_CI = Bound(extra_states=1, repeats=1, max_rounds=10)


@dataclass(frozen=True)
class Target:
    name: str
    alphabet: list[str]
    small_alphabet: list[str]
    spec: Spec
    bound: Bound
    ci_bound: Bound
    make_sul: Callable[[], SUL]

    def committed(self, small: bool = False) -> Model:
        return parse_dot(self.name, (MODELS / self.file(small)).read_text())

    def file(self, small: bool = False) -> str:
        return f"{self.name}{'-small' if small else ''}.dot"


DTLS_CLIENT = Target(
    "dtls-client",
    dtls_client_sul.ALPHABET,
    dtls_client_sul.SMALL_ALPHABET,
    dtls_client_sul.SPEC,
    EXHAUSTIVE,
    EXHAUSTIVE,
    dtls_client_sul.DtlsClientSul,
)
TLS13_SERVER = Target(
    "tls13-server",
    tls13_sul.ALPHABET,
    tls13_sul.SMALL_ALPHABET,
    tls13_sul.SPEC,
    EXHAUSTIVE,
    EXHAUSTIVE,
    tls13_sul.Tls13ApduSul,
)


def lock_target(port: int, key: tuple[bytes, bytes], relay_log: Path) -> Target:
    return Target(
        "lock-server",
        lock_sul.ALPHABET,
        lock_sul.SMALL_ALPHABET,
        lock_sul.SPEC,
        LOCK_FULL,
        LOCK_CI,
        lambda: lock_sul.LockSul(port, key, relay_log),
    )
