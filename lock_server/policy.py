"""Per-request policy: pure functions from claims and facts to a decision.

The DTLS handshake has already proved the identity is authentic; this decides
whether that authentic key may do *this* now, and says why not. It reads no
clock and touches no storage, so every rule is a unit test.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from dataclasses import dataclass

from elock_common import KeyIdentity, Rights
from elock_common.identity import EVERY_DAY, MINUTES_PER_DAY

# Before this instant the lock assumes its clock was never set (no RTC, no NTP
# yet): 2024-01-01T00:00:00Z. Time-bounded keys are then refused, not trusted.
EARLIEST_TRUSTED_TIME = 1_704_067_200


class Code(enum.Enum):
    """The CoAP code a refusal is answered with."""

    UNAUTHORIZED = "4.01"  # the credential is not valid now
    FORBIDDEN = "4.03"  # a valid credential that may not do this


@dataclass(frozen=True)
class Refusal:
    code: Code
    reason: str


def check_key(
    claims: KeyIdentity,
    *,
    need: Rights,
    now: float,
    zone: dt.tzinfo,
    revoked: bool,
    clock_offset: float | None = None,
    max_clock_skew: float = math.inf,
) -> Refusal | None:
    """Everything but use counts: return why the key is refused, or None.

    ``clock_offset`` is the key server's clock minus ours, as last measured (None:
    never measured); beyond ``max_clock_skew`` our clock cannot judge a time bound.
    """
    if revoked:
        return Refusal(Code.UNAUTHORIZED, "key revoked")
    if not claims.rights & need:
        return Refusal(Code.FORBIDDEN, f"key lacks the {(need.name or 'required').lower()} right")
    scheduled = claims.weekdays != EVERY_DAY or (
        claims.window_start,
        claims.window_end,
    ) != (0, MINUTES_PER_DAY)
    if (claims.time_bounded or scheduled) and now < EARLIEST_TRUSTED_TIME:
        return Refusal(Code.FORBIDDEN, "lock clock not set; time-bounded keys refused")
    if (claims.time_bounded or scheduled) and clock_offset is not None:
        if abs(clock_offset) > max_clock_skew:
            return Refusal(Code.FORBIDDEN, clock_off_reason(clock_offset))
    if now < claims.not_before:
        return Refusal(Code.UNAUTHORIZED, "key not yet valid")
    if now >= claims.not_after:
        return Refusal(Code.UNAUTHORIZED, "key expired")
    if scheduled:
        local = dt.datetime.fromtimestamp(now, zone)
        if not claims.weekdays & (1 << local.weekday()):
            return Refusal(Code.FORBIDDEN, "outside the key's weekly schedule")
        minute = local.hour * 60 + local.minute
        if not claims.window_start <= minute < claims.window_end:
            return Refusal(Code.FORBIDDEN, "outside the key's daily time window")
    return None


def clock_off_reason(offset: float) -> str:
    """Says how far off, in units a person reads at a glance."""
    size = abs(offset)
    amount = (
        f"{size / 86400:.1f} days" if size >= 86400
        else f"{size / 3600:.1f} hours" if size >= 3600
        else f"{size:.0f} s"
    )  # fmt: skip
    way = "behind" if offset > 0 else "ahead of"
    return f"lock clock is {amount} {way} the key server's; time-bounded keys refused"


def uses_exhausted(claims: KeyIdentity) -> Refusal:
    if claims.one_time:
        return Refusal(Code.FORBIDDEN, "one-time key already used")
    return Refusal(Code.FORBIDDEN, f"key used up ({claims.max_uses} uses)")
