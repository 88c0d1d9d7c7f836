"""Budget periods in a workspace's time zone, DST included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gwcommon.periods import EPOCH, FOREVER, period_id, period_window


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_day_week_month_in_utc() -> None:
    now = utc(2026, 11, 28, 23, 59, 59)
    assert period_window("day", now) == (utc(2026, 11, 28), utc(2026, 11, 29))
    assert period_window("week", now) == (utc(2026, 11, 23), utc(2026, 11, 30))  # Monday start
    assert period_window("month", now) == (utc(2026, 11, 1), utc(2026, 12, 1))
    assert period_window("month", utc(2026, 12, 31, 12)) == (utc(2026, 12, 1), utc(2027, 1, 1))
    assert period_window("lifetime", now) == (EPOCH, FOREVER)


def test_rollover_at_local_midnight() -> None:
    # 23:30 UTC on the 28th is already the 29th in Berlin (UTC+1 in winter).
    start, end = period_window("day", utc(2026, 11, 28, 23, 30), "Europe/Berlin")
    assert (start, end) == (utc(2026, 11, 28, 23), utc(2026, 11, 29, 23))
    assert period_id("day", start, "Europe/Berlin") == "day:2026-11-29@Europe/Berlin"


def test_dst_days_are_23_and_25_hours() -> None:
    spring = period_window("day", utc(2026, 3, 29, 12), "Europe/Berlin")
    autumn = period_window("day", utc(2026, 10, 25, 12), "Europe/Berlin")
    assert (spring[1] - spring[0]).total_seconds() == 23 * 3600
    assert (autumn[1] - autumn[0]).total_seconds() == 25 * 3600


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="IANA"):
        period_window("day", utc(2026, 1, 1), "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown period"):
        period_window("fortnight", utc(2026, 1, 1))
