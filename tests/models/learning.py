"""Learn a Mealy machine with AALpy, bounded, and report what it cost.

L* (Rivest-Schapire counterexample processing) with AALpy's query cache, which
also stops learning with an error if the SUL ever answers the same word two
ways. Equivalence: the W-method when queries are cheap (in-process SULs: it
proves the model right under the assumption that the SUL has at most
``n + extra_states`` states), the random W-method otherwise (the lock over
UDP), always seeded so a re-learn repeats its queries. docs/testing.md argues
the bounds.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from aalpy.base import SUL
from aalpy.learning_algs import run_Lstar
from aalpy.oracles import RandomWMethodEqOracle, WMethodEqOracle

from tests.models.mealy import Model, from_aalpy
from tests.models.properties import Spec, violating_words


@dataclass(frozen=True)
class Bound:
    """The equivalence oracle's bound: exhaustive W-method, or seeded random walks."""

    extra_states: int | None = 1  # W-method with n + extra_states (None: random W)
    walks_per_state: int = 20
    walk_len: int = 8
    seed: int = 19
    max_rounds: int = 30
    repeats: int = 6  # longest run of one input tried after the W-method
    print_level: int = 0  # AALpy's progress output (2: every round)


@dataclass(frozen=True)
class Stats:
    model: str
    states: int
    transitions: int
    alphabet: int
    learning_rounds: int
    membership_queries: int  # reached the SUL (cache misses)
    membership_steps: int
    equivalence_queries: int  # tests the equivalence oracle ran on the SUL
    equivalence_steps: int
    seconds: float
    # After the last round: a word on which the final hypothesis breaks a property and the
    # system answers otherwise (the bound stopped learning before it could refine it).
    property_word_refuted: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def learn(
    name: str, sul: SUL, alphabet: list[str], bound: Bound, spec: Spec | None = None
) -> tuple[Model, Stats]:
    random.seed(bound.seed)
    logging.disable(logging.WARNING)  # every refused message logs a warning: millions here
    try:
        return _learn(name, sul, alphabet, bound, spec)
    finally:
        logging.disable(logging.NOTSET)


def _learn(
    name: str, sul: SUL, alphabet: list[str], bound: Bound, spec: Spec | None
) -> tuple[Model, Stats]:
    eq: Any
    if bound.extra_states is None:
        eq = _RandomWMethod(alphabet, sul, bound, spec)
    else:
        eq = _GrowingWMethod(alphabet, sul, bound.extra_states, bound.repeats, spec)
    started = time.monotonic()
    machine, info = run_Lstar(
        alphabet,
        sul,
        eq,
        automaton_type="mealy",
        cache_and_non_det_check=True,
        max_learning_rounds=bound.max_rounds,
        return_data=True,
        print_level=bound.print_level,
    )
    seconds = time.monotonic() - started
    refuted = _property_cex(eq, machine, spec)
    model = from_aalpy(name, alphabet, machine)
    states, transitions = model.size()
    stats = Stats(
        model=name,
        states=states,
        transitions=transitions,
        alphabet=len(alphabet),
        learning_rounds=int(info["learning_rounds"]),
        membership_queries=int(info["queries_learning"]),
        membership_steps=int(info["steps_learning"]),
        equivalence_queries=int(info["queries_eq_oracle"]),
        equivalence_steps=int(info["steps_eq_oracle"]),
        seconds=round(seconds, 2),
        property_word_refuted=refuted,
    )
    return model, stats


def _runs(oracle: Any, hypothesis: Any, repeats: int) -> tuple[str, ...] | None:
    """Runs of one input repeated 2..``repeats`` times from every state, then a W suffix.

    Handshakes count: HelloVerifyRequests (3), resends of a flight, replays. A
    counter of c adds c states in a row, beyond what one extra state reaches,
    and only a run of the same input walks along them.
    """
    if not hypothesis.characterization_set:
        hypothesis.characterization_set = hypothesis.compute_characterization_set()
    suffixes = hypothesis.characterization_set or [()]
    for state in hypothesis.states:
        if state.prefix is None:
            state.prefix = hypothesis.get_shortest_path(hypothesis.initial_state, state)
        for letter in oracle.alphabet:
            for n in range(2, repeats + 1):
                for suffix in suffixes:
                    seq = state.prefix + (letter,) * n + tuple(suffix)
                    cex = _first_difference(oracle, hypothesis, seq)
                    if cex is not None:
                        return cex
    return None


def _first_difference(oracle: Any, hypothesis: Any, word: tuple[str, ...]) -> Any:
    """Run ``word`` on the hypothesis and the system; its prefix up to where they differ."""
    oracle.reset_hyp_and_sul(hypothesis)
    for i, x in enumerate(word):
        oracle.num_steps += 1
        if hypothesis.step(x) != oracle.sul.step(x):
            oracle.sul.post()
            return word[: i + 1]
    oracle.sul.post()
    return None


MAX_PROPERTY_WORDS = 200  # per equivalence query: the shortest violating words


def _property_cex(oracle: Any, hypothesis: Any, spec: Spec | None) -> tuple[str, ...] | None:
    """Ask the system the words on which the hypothesis breaks a property.

    A hypothesis that is not yet the system's machine can break a property the
    system keeps (a bounded one especially: the lock's). Each violating word is
    run on the system: where the two answer apart, that is a counterexample;
    where they agree, the violation is real and stays in the model for the
    property tests to report. So what the properties find is never an artefact
    of an unfinished hypothesis.
    """
    if spec is None:
        return None
    model = from_aalpy("hypothesis", list(oracle.alphabet), hypothesis)
    for word in violating_words(model, spec)[:MAX_PROPERTY_WORDS]:
        oracle.num_queries += 1
        cex = _first_difference(oracle, hypothesis, word)
        if cex is not None:
            return cex
    return None


class _GrowingWMethod(WMethodEqOracle):  # type: ignore[misc]
    """The property words, the W-method for n + k states (AALpy's takes a fixed bound),
    then the runs."""

    def __init__(
        self, alphabet: list[str], sul: SUL, extra_states: int, repeats: int, spec: Spec | None
    ) -> None:
        super().__init__(alphabet, sul, max_number_of_states=1 + extra_states)
        self._extra = extra_states
        self._repeats = repeats
        self._spec = spec

    def find_cex(self, hypothesis: Any) -> Any:
        cex = _property_cex(self, hypothesis, self._spec)
        if cex is not None:
            return cex
        self.m = len(hypothesis.states) + self._extra
        cex = super().find_cex(hypothesis)
        return cex if cex is not None else _runs(self, hypothesis, self._repeats)


class _RandomWMethod(RandomWMethodEqOracle):  # type: ignore[misc]
    """The property words, seeded random walks from every state ending in a W suffix,
    then the runs."""

    def __init__(self, alphabet: list[str], sul: SUL, bound: Bound, spec: Spec | None) -> None:
        super().__init__(alphabet, sul, bound.walks_per_state, bound.walk_len)
        self._repeats = bound.repeats
        self._spec = spec

    def find_cex(self, hypothesis: Any) -> Any:
        cex = _property_cex(self, hypothesis, self._spec)
        if cex is not None:
            return cex
        cex = super().find_cex(hypothesis)
        return cex if cex is not None else _runs(self, hypothesis, self._repeats)
