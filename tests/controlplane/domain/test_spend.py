"""Budget windows (gwcommon periods as milliseconds), alert thresholds and texts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.domain.budgets import Budget, Period
from controlplane.domain.spend import (
    Window,
    alert_text,
    current_window,
    format_percent,
    format_spent,
    percent_tenths,
    thresholds_reached,
)


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1000


def test_windows_in_utc() -> None:
    now = ms(2026, 11, 28, 23, 59, 59) + 999
    day = current_window(Period.DAY, now)
    assert (day.start_ms, day.end_ms, day.id) == (
        ms(2026, 11, 28),
        ms(2026, 11, 29),
        "day:2026-11-28@UTC",
    )
    week = current_window(Period.WEEK, now)
    assert (week.start_ms, week.end_ms) == (ms(2026, 11, 23), ms(2026, 11, 30))  # Monday
    month = current_window(Period.MONTH, now)
    assert (month.start_ms, month.end_ms) == (ms(2026, 11, 1), ms(2026, 12, 1))
    assert current_window(Period.DAY, ms(2026, 11, 29)).start_ms == ms(2026, 11, 29)  # rollover


def test_lifetime_window_never_ends() -> None:
    w = current_window(Period.LIFETIME, ms(2026, 11, 28), "Europe/Berlin")
    assert w == Window(Period.LIFETIME, 0, 0, "lifetime") and not w.bounded


def test_windows_follow_the_workspace_time_zone() -> None:
    # 23:30 UTC on 28 Nov is already 29 Nov in Berlin (UTC+1).
    w = current_window(Period.DAY, ms(2026, 11, 28, 23, 30), "Europe/Berlin")
    assert (w.start_ms, w.end_ms) == (ms(2026, 11, 28, 23), ms(2026, 11, 29, 23))
    assert w.id == "day:2026-11-29@Europe/Berlin"
    month = current_window(Period.MONTH, ms(2026, 11, 30, 23, 30), "Europe/Berlin")
    assert month.start_ms == ms(2026, 11, 30, 23)  # 1 December, local midnight
    spring = current_window(Period.DAY, ms(2026, 3, 29, 12), "Europe/Berlin")
    assert spring.end_ms - spring.start_ms == 23 * 3_600_000
    with pytest.raises(ValueError, match="IANA"):
        current_window(Period.DAY, 0, "Mars/Olympus")


@pytest.mark.parametrize(
    ("spent", "reached"),
    [
        (0, ()),
        (4_999_999, ()),
        (5_000_000, (50,)),
        (7_999_999, (50,)),
        (8_000_000, (50, 80)),
        (9_999_999, (50, 80)),
        (10_000_000, (50, 80, 100)),
        (25_000_000, (50, 80, 100)),
    ],
)
def test_thresholds_reached_are_exact(spent: int, reached: tuple[int, ...]) -> None:
    assert thresholds_reached(spent, 10_000_000) == reached


def test_thresholds_of_a_zero_budget() -> None:
    assert thresholds_reached(5, 0) == ()


def test_percent_rounds_down() -> None:
    assert percent_tenths(9_996, 10_000) == 999
    assert format_percent(9_996, 10_000) == "99.9 %"
    assert format_percent(12_340_000, 50_000_000) == "24.6 %"
    assert format_percent(12_350_000, 50_000_000) == "24.7 %"
    assert format_percent(1, 0) == "0.0 %"


def test_format_spent_rounds_to_cents() -> None:
    assert format_spent(12_345_678) == "$12.35"
    assert format_spent(12_344_999) == "$12.34"
    assert format_spent(0) == "$0.00"


def test_alert_texts() -> None:
    day = current_window(Period.DAY, ms(2026, 11, 28, 12))
    text = alert_text(
        scope="key",
        name="alice-laptop",
        workspace="team-a",
        threshold=80,
        budget=Budget(50_000_000, Period.DAY),
        spent_micros=40_010_000,
        window=day,
    )
    assert text == (
        "Key 'alice-laptop' (workspace team-a) reached 80 % of its budget of $50.00/day: "
        "$40.01 spent (80.0 %); it resets at 2026-11-29T00:00:00Z."
    )
    text = alert_text(
        scope="workspace",
        name="team-a",
        workspace="team-a",
        threshold=100,
        budget=Budget(100_000_000, Period.LIFETIME),
        spent_micros=100_020_000,
        window=current_window(Period.LIFETIME, 0),
    )
    assert text.startswith("Workspace 'team-a' reached 100 % of its budget of $100.00:")
    assert text.endswith("(100.0 %); it never resets.")
