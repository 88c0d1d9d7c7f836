"""gwctl's parsers, property-based: every value an operator can type in its documented forms
parses to the exact number and back through the display form; anything else raises
``argparse.ArgumentTypeError`` with a message that names the value and what was expected —
never another exception (which argparse would turn into a bare "invalid value", or a traceback
when the value reaches a protobuf field it does not fit).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwapi.v1 import common_pb2
from gwctl import parse
from gwctl.output import format_budget

FAST = settings(max_examples=300, deadline=None)
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
PERIOD_WORDS = {
    common_pb2.PERIOD_DAY: ["day", "daily", "DAY", " Day "],
    common_pb2.PERIOD_WEEK: ["week", "weekly", "Week"],
    common_pb2.PERIOD_MONTH: ["month", "monthly", "MONTH"],
    common_pb2.PERIOD_LIFETIME: ["lifetime", "total", "Lifetime"],
}
ANY_TEXT = st.one_of(
    st.text(max_size=30),
    st.text("0123456789.,$/ dayweklimontsfhr-+_e²٣５\0", max_size=30),
    st.builds(
        lambda n, unit: "9" * n + unit, st.integers(1, 6000), st.sampled_from(["", "d", "s"])
    ),
)


def dollars_text(micros: int, draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """One of the ways to write ``micros`` as dollars: commas or not, $ or not, trailing zeros."""
    whole, frac = divmod(micros, 1_000_000)
    digits = f"{whole:,}" if draw(st.booleans()) else str(whole)
    decimals = f"{frac:06d}".rstrip("0")
    if decimals or draw(st.booleans()):
        decimals += "0" * draw(st.integers(0, 3))
        text = f"{digits}.{decimals}" if decimals else digits
    else:
        text = digits
    if whole == 0 and decimals and draw(st.booleans()):
        text = "." + decimals  # ".25"
    return ("$" if draw(st.booleans()) else "") + text


@FAST
@given(
    st.integers(1, INT64_MAX),
    st.sampled_from(sorted(PERIOD_WORDS)),
)
def test_budgets_round_trip_through_their_display_form(micros: int, period: int) -> None:
    budget = common_pb2.Budget(amount_micros=micros, period=period)  # type: ignore[arg-type]
    assert parse.parse_budget(format_budget(budget)) == budget


@FAST
@given(st.integers(1, INT64_MAX), st.sampled_from(sorted(PERIOD_WORDS)), st.data())
def test_every_documented_spelling_of_a_budget_parses_exactly(
    micros: int, period: int, data: st.DataObject
) -> None:
    amount = dollars_text(micros, data.draw)
    word = data.draw(st.sampled_from(PERIOD_WORDS[period]))  # type: ignore[index]
    if period == common_pb2.PERIOD_LIFETIME and data.draw(st.booleans()):
        text = amount  # no period: a lifetime total
    else:
        text = f"{amount}/{word}"
    text = data.draw(st.sampled_from(["", " "])) + text + data.draw(st.sampled_from(["", " "]))
    assert parse.parse_budget(text) == common_pb2.Budget(amount_micros=micros, period=period)  # type: ignore[arg-type]


def refuses_readably(fn: Callable[[str], object], text: str, starts: str) -> str | None:
    """Either a value or ArgumentTypeError("<starts> …: …expected/reason…")."""
    try:
        fn(text)
    except argparse.ArgumentTypeError as exc:
        message = str(exc)
        assert message.startswith(starts), message
        assert ": " in message  # the value, then what is expected or what is wrong
        return message
    return None


@FAST
@given(ANY_TEXT)
def test_any_budget_text_parses_in_range_or_is_refused_readably(text: str) -> None:
    if refuses_readably(parse.parse_budget, text, "invalid budget") is None:
        budget = parse.parse_budget(text)
        assert 0 < budget.amount_micros <= INT64_MAX
        assert budget.period in PERIOD_WORDS


@FAST
@given(st.lists(st.tuples(st.integers(0, 1_000), st.sampled_from("smhdw")), min_size=1, max_size=4))
def test_durations_in_every_documented_form(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = sum(n * units[unit] for n, unit in parts)
    if total == 0:
        with pytest.raises(argparse.ArgumentTypeError, match="must be longer than 0s"):
            parse.parse_duration(text)
    else:
        assert parse.parse_duration(text) == total
        assert parse.parse_duration(f" {text.upper()} ") == total


@FAST
@given(ANY_TEXT)
def test_any_duration_text_parses_to_a_sendable_number_or_is_refused_readably(text: str) -> None:
    """A parsed duration always fits the int64 fields it is sent in (ttl_seconds, since_ms)."""
    if refuses_readably(parse.parse_duration, text, "invalid duration") is None:
        assert 0 < parse.parse_duration(text) <= parse.MAX_DURATION_S


def test_absurd_durations_are_refused_not_crashed() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="at most"):
        parse.parse_duration("99999999999999w")
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        parse.parse_duration("9" * 5000 + "d")  # beyond Python's int-from-text digit limit


@FAST
@given(ANY_TEXT)
def test_counts_times_statuses_and_weights_never_raise_anything_else(text: str) -> None:
    for fn, starts in (
        (parse.parse_count, "invalid number"),
        (parse.parse_seconds_ms, "invalid time"),
        (parse.parse_whole_seconds, "invalid time"),
        (parse.parse_statuses, "invalid status"),
        (parse.parse_weights, "invalid weight"),
        (parse.usd_to_micros, "invalid amount"),
    ):
        if refuses_readably(fn, text, starts) is None:
            value = fn(text)
            for n in value if isinstance(value, list) else [value]:
                assert isinstance(n, int) and 0 <= n <= INT64_MAX


def test_statuses_refuse_digits_int_cannot_read() -> None:
    """'4²9'.isdigit() is True but int() cannot read it: refused with the message, not a crash."""
    with pytest.raises(argparse.ArgumentTypeError, match="invalid status"):
        parse.parse_statuses("429,4²9")


@FAST
@given(st.integers(0, INT32_MAX))
def test_whole_seconds_and_milliseconds_round_trip(n: int) -> None:
    assert parse.parse_whole_seconds(str(n)) == n
    assert parse.parse_seconds_ms(f"{n}ms") == n
    if n:  # 0 displays as "default"
        assert parse.parse_seconds_ms(parse.format_seconds_ms(n)) == n
