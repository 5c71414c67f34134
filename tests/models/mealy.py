"""A learned Mealy machine in a canonical form, so that a model change is a text diff.

AALpy names states after its observation table, which changes from run to run.
``Model`` renumbers them by breadth-first search from the initial state, taking
inputs in alphabet order: two equivalent minimal machines then print the same
DOT text, and the committed ``docs/models/*.dot`` is compared byte for byte.

The same form is what the property checks (``tests.models.properties``) read,
so they run on the committed models without learning anything.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any

State = str
Transitions = dict[State, dict[str, tuple[str, State]]]

_EDGE = re.compile(r'^\s*(s\d+) -> (s\d+) \[label="([^"/]+)/([^"]*)"\];$')


@dataclass(frozen=True)
class Model:
    """States ``s0`` (initial) .. ``sN``; ``transitions[state][input] = (output, next state)``."""

    name: str
    alphabet: tuple[str, ...]
    transitions: Transitions

    initial: State = "s0"

    @property
    def states(self) -> list[State]:
        return list(self.transitions)

    def step(self, state: State, letter: str) -> tuple[str, State]:
        return self.transitions[state][letter]

    def run(self, word: list[str] | tuple[str, ...]) -> list[str]:
        state, out = self.initial, []
        for letter in word:
            output, state = self.step(state, letter)
            out.append(output)
        return out

    def to_dot(self) -> str:
        lines = [f"digraph {self.name.replace('-', '_')} {{"]
        lines += [f'  {s} [label="{s}", shape=circle];' for s in self.states]
        lines += ['  __start0 [label="", shape=none];', "  __start0 -> s0;"]
        for s in self.states:
            for letter in self.alphabet:
                output, target = self.transitions[s][letter]
                lines.append(f'  {s} -> {target} [label="{letter}/{output}"];')
        return "\n".join([*lines, "}"]) + "\n"

    def access_words(self) -> dict[State, tuple[str, ...]]:
        """The shortest word that reaches each state (inputs in alphabet order)."""
        words: dict[State, tuple[str, ...]] = {self.initial: ()}
        queue = deque([self.initial])
        while queue:
            state = queue.popleft()
            for letter in self.alphabet:
                target = self.transitions[state][letter][1]
                if target not in words:
                    words[target] = (*words[state], letter)
                    queue.append(target)
        return words

    def size(self) -> tuple[int, int]:
        return len(self.transitions), len(self.transitions) * len(self.alphabet)


def canonical(name: str, alphabet: list[str], initial: Any, step: Any) -> Model:
    """Renumber a machine by BFS; ``step(state, letter) -> (output, next)`` on any state type."""
    names: dict[Any, State] = {initial: "s0"}
    order = deque([initial])
    transitions: Transitions = {}
    while order:
        state = order.popleft()
        row: dict[str, tuple[str, State]] = {}
        for letter in alphabet:
            output, target = step(state, letter)
            if target not in names:
                names[target] = f"s{len(names)}"
                order.append(target)
            row[letter] = (str(output), names[target])
        transitions[names[state]] = row
    return _minimal(Model(name, tuple(alphabet), transitions))


def from_aalpy(name: str, alphabet: list[str], machine: Any) -> Model:
    def step(state: Any, letter: str) -> tuple[str, Any]:
        return state.output_fun[letter], state.transitions[letter]

    return canonical(name, alphabet, machine.initial_state, step)


def parse_dot(name: str, text: str) -> Model:
    """Read back what ``Model.to_dot`` wrote (and nothing else)."""
    transitions: Transitions = {}
    alphabet: list[str] = []
    for line in text.splitlines():
        match = _EDGE.match(line)
        if match is None:
            continue
        source, target, letter, output = match.groups()
        if letter not in alphabet:
            alphabet.append(letter)
        transitions.setdefault(source, {})[letter] = (output, target)
    return Model(name, tuple(alphabet), transitions)


def restricted(model: Model, alphabet: list[str]) -> Model:
    """The same machine seen through fewer inputs, minimised and renumbered."""
    return canonical(model.name, alphabet, model.initial, model.step)


def _minimal(model: Model) -> Model:
    """Moore-style partition refinement; learned machines are minimal, restricted ones not."""
    block = {s: tuple(model.transitions[s][a][0] for a in model.alphabet) for s in model.states}
    while True:
        refined = {
            s: (block[s], tuple(block[model.transitions[s][a][1]] for a in model.alphabet))
            for s in model.states
        }
        if len(set(refined.values())) == len(set(block.values())):
            break
        block = refined  # type: ignore[assignment]
    if len(set(block.values())) == len(model.states):
        return model

    def step(state: State, letter: str) -> tuple[str, Any]:
        output, target = model.transitions[state][letter]
        return output, block[target]

    representatives = {block[s]: s for s in reversed(model.states)}

    def quotient_step(key: Any, letter: str) -> tuple[str, Any]:
        return step(representatives[key], letter)

    return canonical(model.name, list(model.alphabet), block[model.initial], quotient_step)


def equivalent_states(model: Model, a: State, b: State, alphabet: list[str]) -> list[str] | None:
    """None if ``a`` and ``b`` answer every word over ``alphabet`` alike, else a witness word."""
    seen = {(a, b)}
    queue: deque[tuple[State, State, list[str]]] = deque([(a, b, [])])
    while queue:
        x, y, word = queue.popleft()
        for letter in alphabet:
            (ox, nx), (oy, ny) = model.step(x, letter), model.step(y, letter)
            if ox != oy:
                return [*word, letter]
            if (nx, ny) not in seen:
                seen.add((nx, ny))
                queue.append((nx, ny, [*word, letter]))
    return None
