"""The handshake properties, checked on a learned model by exploring it exhaustively.

A model's outputs are ``+``-joined tokens (``SH+SHD``, ``CCS+FIN+CONNECTED``,
``ALERT(fatal,40)``, ``NONE``). Each SUL marks what the properties need to see:

- ``CONNECTED``: the SUL completed a handshake (it accepted the peer's Finished);
- ``APP...``: application data the SUL accepted or sent;
- ``RELAY_ON``: the lock energized its relay;
- ``ALERT(fatal,...)``: the SUL sent a fatal alert.

The checks walk the product of the model with a small monitor (how far along
the happy path the inputs so far have come, whether the last identity offered
was valid, whether the handshake has completed), so every path of the model is
covered, not a sample. Each returns a list of violations, each with the input
word that shows it, so a failing test prints a reproducible trace.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tests.models.mealy import Model, State, equivalent_states

CONNECTED = "CONNECTED"
RELAY_ON = "RELAY_ON"


@dataclass(frozen=True)
class Spec:
    """What a correct handshake looks like, in one model's input names."""

    happy_path: tuple[str, ...]  # the inputs a handshake needs, in this order
    alert_inputs: frozenset[str]  # inputs that send the SUL a fatal alert
    repeat_input: str  # re-sends the mapper's last flight
    valid_identity: frozenset[str] = frozenset()
    unknown_identity: frozenset[str] = frozenset()
    authorized_request: str | None = None  # the only input that may energize the relay
    # Outputs a dead connection may still give (strict check); None: the SUL may start a
    # new session after a fatal error (a server), which must then start from scratch.
    quiet_outputs: frozenset[str] | None = None
    not_progress: frozenset[str] = field(default_factory=frozenset)


def tokens(output: str) -> list[str]:
    return [] if output == "NONE" else output.split("+")


def _fatal(output: str) -> bool:
    return any(t.startswith("ALERT(fatal") for t in tokens(output))


@dataclass(frozen=True)
class _Monitor:
    state: State
    progress: int  # inputs of the happy path seen so far, in order
    identity_ok: bool  # the last identity offered was a valid one
    completed: bool


def _explore(model: Model, spec: Spec) -> tuple[list[tuple[str, list[str]]], set[State]]:
    """All monitor states; returns violations (with their words) and the model states right
    after a fatal error."""
    violations: list[tuple[str, list[str]]] = []
    dead: set[State] = set()
    start = _Monitor(model.initial, 0, not spec.valid_identity, False)
    seen = {start}
    queue: deque[tuple[_Monitor, list[str]]] = deque([(start, [])])
    while queue:
        m, word = queue.popleft()
        for letter in model.alphabet:
            output, target = model.step(m.state, letter)
            trace = [*word, letter]
            progress, identity_ok, completed = m.progress, m.identity_ok, m.completed
            if progress < len(spec.happy_path) and letter == spec.happy_path[progress]:
                progress += 1
            if letter in spec.valid_identity:
                identity_ok = True
            elif letter in spec.unknown_identity:
                identity_ok = False
            toks = tokens(output)
            if CONNECTED in toks:
                if progress < len(spec.happy_path):
                    missing = spec.happy_path[progress]
                    violations.append((f"completes without {missing} in order", trace))
                if not identity_ok:
                    violations.append(("completes with an unknown identity", trace))
                completed = True
            if any(t.startswith("APP") for t in toks) and not completed:
                violations.append((f"application data before Finished ({output})", trace))
            if RELAY_ON in toks and not (completed and letter == spec.authorized_request):
                violations.append(("relay energized outside an authorized request", trace))
            if letter in spec.alert_inputs or _fatal(output):
                dead.add(target)
                progress, identity_ok, completed = 0, not spec.valid_identity, False
            nxt = _Monitor(target, progress, identity_ok, completed)
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, trace))
    return violations, dead


def check_handshake(model: Model, spec: Spec) -> list[str]:
    """No completion with a message skipped or out of order or an unknown identity; no
    application data before a verified Finished; the relay only for an authorized request
    after a complete handshake. A fatal error resets the monitor: the session it ended is
    dead, so anything after it needs a whole new handshake."""
    return [f"{what}: {word}" for what, word in _explore(model, spec)[0]]


def violating_words(model: Model, spec: Spec) -> list[tuple[str, ...]]:
    """The words that show the handshake and retransmission violations, shortest first:
    what a learner asks the real system, to tell a real violation from a wrong hypothesis.
    A retransmission violation needs two words: with the repeat, and without it."""
    words = [tuple(word) for _, word in _explore(model, spec)[0]]
    access = model.access_words()
    for state, letter, _, _, witness in _retransmission_violations(model, spec):
        words.append((*access[state], letter, spec.repeat_input, *witness))
        words.append((*access[state], letter, *witness))
    return sorted(words, key=len)


def check_dead_after_fatal(model: Model, spec: Spec) -> list[str]:
    """Strict form, for the card: after a fatal alert either way nothing but quiet outputs."""
    if spec.quiet_outputs is None:
        return []  # the server form is part of check_handshake (the monitor resets)
    _, dead = _explore(model, spec)
    violations = []
    for origin in sorted(dead):
        seen, queue = {origin}, deque([(origin, list[str]())])
        while queue:
            state, word = queue.popleft()
            for letter in model.alphabet:
                output, target = model.step(state, letter)
                if output not in spec.quiet_outputs:
                    violations.append(f"{origin} is not dead: {[*word, letter]} gives {output}")
                if target not in seen:
                    seen.add(target)
                    queue.append((target, [*word, letter]))
    return violations


def _retransmission_violations(
    model: Model, spec: Spec
) -> list[tuple[State, str, State, State, list[str]]]:
    """(state, flight, t, u, witness) for each flight whose repeat moved the state."""
    if spec.repeat_input not in model.alphabet:
        return []  # a small alphabet without repeats: nothing to check
    others = [a for a in model.alphabet if a != spec.repeat_input]
    found = []
    for state in model.states:
        for letter in others:
            _, t = model.step(state, letter)
            repeat_output, u = model.step(t, spec.repeat_input)
            if _fatal(repeat_output):
                continue
            witness = equivalent_states(model, t, u, others)
            if witness is not None:
                found.append((state, letter, t, u, witness))
    return found


def check_retransmission(model: Model, spec: Spec) -> list[str]:
    """A repeated flight changes nothing but the repetition budget, or is refused.

    For every state ``t`` entered by a flight, and ``u`` = ``t`` after that flight
    comes again, ``t`` and ``u`` must answer every word without repeats alike: the
    repeat did not advance (or set back) the handshake a second time. The one
    other answer allowed is a fatal alert (TLS over a reliable transport has no
    retransmission, so a replayed record is an attack); the dead-state check then
    covers what follows.
    """
    return [
        f"{letter} then {spec.repeat_input} from {state} advanced the state: "
        f"{witness} tells {t} from {u}"
        for state, letter, t, u, witness in _retransmission_violations(model, spec)
    ]


def check_all(model: Model, spec: Spec) -> list[str]:
    return (
        check_handshake(model, spec)
        + check_dead_after_fatal(model, spec)
        + check_retransmission(model, spec)
    )
