"""A key's push, as one transition table: (state, event) -> state, everything else refused.

Both deliveries drive it: the worker's visits through RACS and a card's own
sync through its host (``api.card_sync``). They differ in when work is done
(the worker when ``push_due_at`` comes, a host whenever it dials), never in
what a state means:

- ``pending``: to be installed;  ``installed``: in the card;
- ``failed``: will not be tried again by itself (``push_error`` says why);
- ``removing``: revoked, its container to be deleted;  ``removed``: not in the card.

The table is the h11 / h2 habit: a transition not listed is a bug in the
caller, raised as ``PushTransitionError``, never a silent state change.
"""

from __future__ import annotations

import enum
import logging

from key_provisioner.schemas.keys import PushState

log = logging.getLogger(__name__)


class PushEvent(enum.Enum):
    LANDED = "landed"  # the card holds the container (installed, or already present)
    GONE = "gone"  # the card does not hold it any more (deleted, not found, another key's)
    REFUSED = "refused"  # a failure another try would not fix
    TRY_AGAIN = "try again"  # a transient failure: same state, later
    REVOKED = "revoked"  # revoked (or its lock retired) while it may be in the card
    DROPPED = "dropped"  # revoked before anything of it could reach the card
    RETRY_INSTALL = "retry install"  # an admin retries a failed install
    RETRY_DELETE = "retry delete"  # an admin retries a failed delete


P, IN, F, RM, RD = (PushState.PENDING, PushState.INSTALLED, PushState.FAILED,
                   PushState.REMOVING, PushState.REMOVED)  # fmt: skip
E = PushEvent

TRANSITIONS: dict[tuple[PushState, PushEvent], PushState] = {
    (P, E.LANDED): IN,
    (P, E.REFUSED): F,
    (P, E.TRY_AGAIN): P,
    (P, E.REVOKED): RM,
    (P, E.DROPPED): RD,
    (IN, E.LANDED): IN,  # a second visit finds it there: idempotent
    (IN, E.REVOKED): RM,
    (F, E.DROPPED): RD,
    (F, E.RETRY_INSTALL): P,
    (F, E.RETRY_DELETE): RM,
    (RM, E.GONE): RD,
    (RM, E.REFUSED): F,
    (RM, E.TRY_AGAIN): RM,
    (RM, E.REVOKED): RM,
    (RD, E.GONE): RD,
    (RD, E.REVOKED): RD,
    (RD, E.DROPPED): RD,
}


class PushTransitionError(RuntimeError):
    """A push event that its state does not allow (a caller's bug)."""


def next_state(state: PushState | str, event: PushEvent) -> PushState:
    """The state after *event*; ``PushTransitionError`` if the table does not allow it."""
    current = PushState(state)
    try:
        new = TRANSITIONS[(current, event)]
    except KeyError:
        raise PushTransitionError(f"push {current.value}: {event.value} is not allowed") from None
    if new is not current:
        log.debug("push %s -> %s (%s)", current.value, new.value, event.value)
    return new
