"""Budgets, durations and the other values operators type."""

from __future__ import annotations

import argparse

import pytest

from gwapi.v1 import common_pb2
from gwctl import parse
from gwctl.output import format_budget


@pytest.mark.parametrize(
    ("text", "micros", "period"),
    [
        ("50/day", 50_000_000, common_pb2.PERIOD_DAY),
        ("$1,000.50/month", 1_000_500_000, common_pb2.PERIOD_MONTH),
        ("20/week", 20_000_000, common_pb2.PERIOD_WEEK),
        ("100", 100_000_000, common_pb2.PERIOD_LIFETIME),
        ("100/lifetime", 100_000_000, common_pb2.PERIOD_LIFETIME),
        (" $5 / Day ", 5_000_000, common_pb2.PERIOD_DAY),
        ("0.000001/day", 1, common_pb2.PERIOD_DAY),
        ("0.3/day", 300_000, common_pb2.PERIOD_DAY),  # 0.1 + 0.2 territory: exact, no float
        ("1234567.891011/month", 1_234_567_891_011, common_pb2.PERIOD_MONTH),
        ("1,234,567/month", 1_234_567_000_000, common_pb2.PERIOD_MONTH),
        (".5/day", 500_000, common_pb2.PERIOD_DAY),
    ],
)
def test_budget_parses_exactly(text: str, micros: int, period: int) -> None:
    budget = parse.parse_budget(text)
    assert budget.amount_micros == micros
    assert budget.period == period


def test_budget_huge_amount_stays_exact() -> None:
    # 9,007,199,254.740993 USD: one micro-dollar past float's exact-integer range (2**53 + 1).
    budget = parse.parse_budget("9007199254.740993/month")
    assert budget.amount_micros == 2**53 + 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1.0000001/day", "6 decimal places"),
        ("50/year", "unknown period 'year'"),
        ("0/day", "greater than 0"),
        ("-5/day", "expected AMOUNT"),
        ("1,00/day", "expected AMOUNT"),
        ("abc/day", "expected AMOUNT"),
        ("", "expected AMOUNT"),
        ("/day", "expected AMOUNT"),
        ("5e3/day", "expected AMOUNT"),
        ("99999999999999999999/day", "too large"),
    ],
)
def test_budget_rejects_with_a_readable_message(text: str, fragment: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse.parse_budget(text)
    message = str(info.value)
    assert fragment in message
    assert message.startswith("invalid budget")


def test_budget_round_trips_through_its_display_form() -> None:
    for text in ("50/day", "$1,000.50/month", "0.000001/week", "100", "12.345678/day"):
        budget = parse.parse_budget(text)
        assert parse.parse_budget(format_budget(budget)) == budget


def test_usd_to_micros_refuses_sub_micro_precision() -> None:
    assert parse.usd_to_micros("$0.10") == 100_000
    with pytest.raises(argparse.ArgumentTypeError, match="6 decimal places"):
        parse.usd_to_micros("0.0000005")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 12 * 3600),
        ("90m", 90 * 60),
        ("45s", 45),
        ("2w", 14 * 86400),
        ("1h30m", 5400),
        (" 7D ", 7 * 86400),
    ],
)
def test_duration(text: str, seconds: int) -> None:
    assert parse.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "d", "1x", "-5m", "5m-", "m5", "1.5h", "1h 30m"])
def test_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a duration such as 30d"):
        parse.parse_duration(text)


def test_duration_zero_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="longer than 0s"):
        parse.parse_duration("0s")


def test_counts_lists_weights_options() -> None:
    assert parse.parse_count("0") == 0
    assert parse.parse_count("1_000") == 1000
    with pytest.raises(argparse.ArgumentTypeError):
        parse.parse_count("-1")
    with pytest.raises(argparse.ArgumentTypeError):
        parse.parse_count("many")
    with pytest.raises(argparse.ArgumentTypeError):
        parse.parse_count(str(2**31))
    assert parse.parse_list(" a, b,,c ") == ["a", "b", "c"]
    assert parse.parse_weights("3,1") == [3, 1]
    with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
        parse.parse_weights("3,0")
    assert parse.parse_option("region = us-east-1") == ("region", "us-east-1")
    assert parse.parse_option("k=a=b") == ("k", "a=b")
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        parse.parse_option("novalue")


def test_budget_amounts_take_ascii_digits_only() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid budget"):
        parse.parse_budget("١٠/day")
