"""The one duration grammar (gwcommon.durations), used by gwctl's flags and files."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwcommon.durations import MAX_DURATION_S, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 2_592_000),
        ("12h", 43_200),
        ("90m", 5_400),
        ("3600s", 3_600),
        ("2w", 1_209_600),
        ("1h30m", 5_400),
        (" 7D ", 604_800),
    ],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "45", "0d", "-1h", "1.5h", "10y", "h", "1 day", "3600ms", "1h 30m"]
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_too_large_is_refused_not_crashed() -> None:
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_duration("9" * 5000 + "s")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (61, "61s"), (5_400, "90m"), (86_400, "1d"), (604_800, "1w")]
)
def test_format(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    if seconds:
        assert parse_duration(text) == seconds


def test_format_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, MAX_DURATION_S))
def test_durations_round_trip_through_their_display_form(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_duration_in_range_or_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert str(exc).isprintable() or "\\" in str(exc)
    else:
        assert 0 < seconds <= MAX_DURATION_S
