"""Calendar budget periods on the data plane: the Period-enum adapter over gwcommon.periods,
its millisecond windows and cache, DST, time zones, and tolerance of an unknown zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dataplane.config.snapshot import Period
from dataplane.policy.periods import (
    EPOCH,
    FAR_FUTURE,
    current_window,
    format_instant,
    period_id,
    period_window,
)

BERLIN = "Europe/Berlin"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_utc_day_week_month() -> None:
    now = utc(2026, 11, 28, 15, 30)  # a Saturday, ISO week 48
    assert period_window(Period.DAY, now, "") == (utc(2026, 11, 28), utc(2026, 11, 29))
    assert period_window(Period.WEEK, now, "") == (utc(2026, 11, 23), utc(2026, 11, 30))
    assert period_window(Period.MONTH, now, "UTC") == (utc(2026, 11, 1), utc(2026, 12, 1))
    assert period_window(Period.LIFETIME, now, BERLIN) == (EPOCH, FAR_FUTURE)
    assert period_id(Period.DAY, now, "") == "day:2026-11-28@UTC"
    assert period_id(Period.WEEK, now, "") == "week:2026-11-23@UTC"
    assert period_id(Period.MONTH, now, "") == "month:2026-11-01@UTC"
    assert period_id(Period.LIFETIME, now, "") == "lifetime"


def test_rollover_at_local_midnight() -> None:
    # 23:00 UTC on the 28th is already the 29th in Berlin (UTC+1 in November).
    before, after = utc(2026, 11, 28, 22, 59, 59), utc(2026, 11, 28, 23, 0, 0)
    assert period_id(Period.DAY, before, BERLIN) == "day:2026-11-28@Europe/Berlin"
    assert period_id(Period.DAY, after, BERLIN) == "day:2026-11-29@Europe/Berlin"
    assert period_window(Period.DAY, before, BERLIN) == (
        utc(2026, 11, 27, 23),
        utc(2026, 11, 28, 23),
    )
    assert period_window(Period.DAY, after, BERLIN)[0] == utc(2026, 11, 28, 23)
    # Same instants in UTC: still the 28th.
    assert period_id(Period.DAY, after, "") == "day:2026-11-28@UTC"


def test_month_ends_and_year_end() -> None:
    assert period_window(Period.MONTH, utc(2026, 12, 31, 23, 59), "") == (
        utc(2026, 12, 1),
        utc(2027, 1, 1),
    )
    assert period_window(Period.MONTH, utc(2028, 2, 29, 12), "") == (
        utc(2028, 2, 1),
        utc(2028, 3, 1),
    )
    # New York, UTC-5 in January: 03:00 UTC on Feb 1 is still January locally.
    start, end = period_window(Period.MONTH, utc(2027, 2, 1, 3), "America/New_York")
    assert (start, end) == (utc(2027, 1, 1, 5), utc(2027, 2, 1, 5))
    # The ISO week that straddles the new year is named by its Monday in December.
    assert period_id(Period.WEEK, utc(2027, 1, 1, 12), "") == "week:2026-12-28@UTC"
    assert period_window(Period.WEEK, utc(2027, 1, 1, 12), "") == (
        utc(2026, 12, 28),
        utc(2027, 1, 4),
    )


def test_dst_change_days() -> None:
    # Spring forward in Berlin (29 March 2026): the day is 23 hours long.
    start, end = period_window(Period.DAY, utc(2026, 3, 29, 12), BERLIN)
    assert (start, end) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    assert end - start == timedelta(hours=23)
    # Fall back (25 October 2026): 25 hours.
    start, end = period_window(Period.DAY, utc(2026, 10, 25, 12), BERLIN)
    assert end - start == timedelta(hours=25)
    # The week containing the change is 167 hours long, the month 743.
    start, end = period_window(Period.WEEK, utc(2026, 3, 26), BERLIN)
    assert end - start == timedelta(hours=7 * 24 - 1)
    start, end = period_window(Period.MONTH, utc(2026, 3, 15), BERLIN)
    assert end - start == timedelta(hours=31 * 24 - 1)


def test_midnight_in_a_dst_gap_starts_the_day_at_the_transition() -> None:
    # Havana springs forward at 00:00 local (8 March 2026): there is no local midnight; the day
    # starts at the transition instant, 05:00 UTC (= 01:00 CDT), and ends at the next midnight.
    havana = "America/Havana"
    start, end = period_window(Period.DAY, utc(2026, 3, 8, 12), havana)
    assert start == utc(2026, 3, 8, 5)
    assert end == datetime(2026, 3, 9, tzinfo=ZoneInfo(havana)).astimezone(UTC)
    assert end - start == timedelta(hours=23)
    # The previous day ends exactly where this one starts.
    assert period_window(Period.DAY, utc(2026, 3, 7, 12), havana)[1] == start


def test_unknown_zone_is_utc() -> None:
    now = utc(2026, 11, 28, 23, 30)
    assert period_window(Period.DAY, now, "Mars/Olympus") == (utc(2026, 11, 28), utc(2026, 11, 29))
    assert period_id(Period.DAY, now, "Mars/Olympus") == "day:2026-11-28@UTC"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        period_window(Period.DAY, datetime(2026, 1, 1), "")


def test_current_window_is_cached_until_it_ends() -> None:
    end = ms(utc(2026, 11, 29))
    w = current_window(Period.DAY, end - 1, "")
    assert (w.id, w.start_ms, w.end_ms) == ("day:2026-11-28@UTC", ms(utc(2026, 11, 28)), end)
    assert current_window(Period.DAY, end - 1000, "") is w
    nxt = current_window(Period.DAY, end, "")
    assert nxt.id == "day:2026-11-29@UTC" and nxt.start_ms == end
    berlin = current_window(Period.DAY, end, BERLIN)
    assert berlin.id == "day:2026-11-29@Europe/Berlin" and berlin.end_text() == (
        "2026-11-30T00:00:00+01:00"
    )
    life = current_window(Period.LIFETIME, end, BERLIN)
    assert life.id == "lifetime" and life.start_ms == 0 and not life.resets


def test_format_instant() -> None:
    t = ms(utc(2026, 11, 29))
    assert format_instant(t) == "2026-11-29T00:00:00Z"
    assert format_instant(t, BERLIN) == "2026-11-29T01:00:00+01:00"


def test_windows_match_the_shared_rules_the_control_plane_uses() -> None:
    from gwcommon.periods import period_window as shared

    for tz in ("", BERLIN, "America/Havana", "Asia/Kolkata"):
        for period in (Period.DAY, Period.WEEK, Period.MONTH):
            for now in (utc(2026, 3, 8, 4, 59), utc(2026, 3, 29, 1), utc(2026, 12, 31, 23)):
                w = current_window(period, ms(now), tz)
                start, end = shared(period.value, now, tz)
                assert (w.start_ms, w.end_ms) == (ms(start), ms(end))
