"""Per-request policy rules, one by one, with no clock and no storage."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from elock_common import KeyIdentity, LockSecret, Rights, mint_key
from lock_server.policy import EARLIEST_TRUSTED_TIME, Code, check_key

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()  # a Monday, 10:00 UTC


def key(**kwargs: object) -> KeyIdentity:
    return KeyIdentity(lock_tag=b"ab", key_id=b"123456", **kwargs)  # type: ignore[arg-type]


def refusal(
    claims: KeyIdentity,
    *,
    now: float = NOW,
    need: Rights = Rights.OPEN,
    revoked: bool = False,
    zone: dt.tzinfo = UTC,
) -> tuple[Code, str] | None:
    r = check_key(claims, need=need, now=now, zone=zone, revoked=revoked)
    return None if r is None else (r.code, r.reason)


def test_plain_key_is_granted() -> None:
    assert refusal(key()) is None


def test_revoked_beats_everything() -> None:
    assert refusal(key(), revoked=True) == (Code.UNAUTHORIZED, "key revoked")


def test_rights() -> None:
    assert refusal(key(rights=Rights.ADMIN)) == (Code.FORBIDDEN, "key lacks the open right")
    assert refusal(key(rights=Rights.OPEN), need=Rights.ADMIN) == (
        Code.FORBIDDEN,
        "key lacks the admin right",
    )
    assert refusal(key(rights=Rights.ADMIN), need=Rights.OPEN | Rights.ADMIN) is None


def test_validity_window_edges() -> None:
    claims = key(not_before=int(NOW), not_after=int(NOW) + 60)
    assert refusal(claims, now=NOW - 1) == (Code.UNAUTHORIZED, "key not yet valid")
    assert refusal(claims, now=NOW) is None
    assert refusal(claims, now=NOW + 59.9) is None
    assert refusal(claims, now=NOW + 60) == (Code.UNAUTHORIZED, "key expired")


def test_unset_clock_refuses_only_time_bound_keys() -> None:
    early = EARLIEST_TRUSTED_TIME - 1
    assert refusal(key(), now=86400) is None
    for claims in (
        key(not_after=2**31),
        key(not_before=1),
        key(weekdays=0x1F),
        key(window_end=600),
    ):
        assert refusal(claims, now=early) == (
            Code.FORBIDDEN,
            "lock clock not set; time-bounded keys refused",
        )


def test_weekly_schedule_in_lock_time_zone() -> None:
    weekdays_only = key(weekdays=0x1F)
    saturday = dt.datetime(2026, 12, 5, 12, 0, tzinfo=UTC).timestamp()
    assert refusal(weekdays_only) is None
    assert refusal(weekdays_only, now=saturday) == (
        Code.FORBIDDEN,
        "outside the key's weekly schedule",
    )
    # Sunday 23:30 in UTC is already Monday in Tokyo
    sunday_late = dt.datetime(2026, 12, 6, 23, 30, tzinfo=UTC).timestamp()
    assert refusal(weekdays_only, now=sunday_late) is not None
    assert refusal(weekdays_only, now=sunday_late, zone=zoneinfo.ZoneInfo("Asia/Tokyo")) is None


def test_daily_window() -> None:
    office = key(window_start=8 * 60, window_end=18 * 60)
    assert refusal(office) is None
    evening = dt.datetime(2026, 11, 30, 18, 0, tzinfo=UTC).timestamp()
    assert refusal(office, now=evening) == (Code.FORBIDDEN, "outside the key's daily time window")
    morning = dt.datetime(2026, 11, 30, 7, 59, tzinfo=UTC).timestamp()
    assert refusal(office, now=morning) is not None


@pytest.mark.parametrize("max_uses", [0, 1, 5])
def test_use_counts_are_not_policy(max_uses: int) -> None:
    assert refusal(key(max_uses=max_uses)) is None  # counted by the store, atomically


def test_a_clock_far_from_the_key_servers_refuses_time_bounded_keys_with_the_reason() -> None:
    now = 1_800_000_000
    claims, _ = mint_key(LockSecret.generate(), rights=Rights.OPEN, not_before=now - 60,
                         not_after=now + 86400)  # fmt: skip
    ahead = check_key(claims, need=Rights.OPEN, now=now, zone=dt.UTC, revoked=False,
                      clock_offset=-2 * 86400, max_clock_skew=300)  # fmt: skip
    assert ahead is not None and ahead.code is Code.FORBIDDEN
    assert ahead.reason == (
        "lock clock is 2.0 days ahead of the key server's; time-bounded keys refused"
    )
    behind = check_key(claims, need=Rights.OPEN, now=now, zone=dt.UTC, revoked=False,
                       clock_offset=3 * 3600, max_clock_skew=300)  # fmt: skip
    assert behind is not None and "3.0 hours behind" in behind.reason
    fine = check_key(claims, need=Rights.OPEN, now=now, zone=dt.UTC, revoked=False,
                     clock_offset=12.5, max_clock_skew=300)  # fmt: skip
    assert fine is None
    unbounded, _ = mint_key(LockSecret.generate(), rights=Rights.OPEN)
    assert check_key(unbounded, need=Rights.OPEN, now=now, zone=dt.UTC, revoked=False,
                     clock_offset=-2 * 86400, max_clock_skew=300) is None  # fmt: skip
