import pytest

from controlplane.domain.budgets import (
    Budget,
    Period,
    format_amount,
    format_budget,
    parse_amount_micros,
    parse_budget,
)
from controlplane.domain.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "micros", "period"),
    [
        ("50/day", 50_000_000, Period.DAY),
        ("$1,000.50/month", 1_000_500_000, Period.MONTH),
        ("20/week", 20_000_000, Period.WEEK),
        ("100", 100_000_000, Period.LIFETIME),
        ("$0.000001/daily", 1, Period.DAY),
        (" 7.5 / Monthly ", 7_500_000, Period.MONTH),
        ("$12,345,678/lifetime", 12_345_678_000_000, Period.LIFETIME),
        (".25/week", 250_000, Period.WEEK),
        ("0.1/day", 100_000, Period.DAY),  # exact: Decimal, not float (0.1 is not a binary float)
    ],
)
def test_parse_budget(text: str, micros: int, period: Period) -> None:
    assert parse_budget(text) == Budget(micros, period)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty budget"),
        ("abc/day", "invalid amount"),
        ("-5/day", "invalid amount"),
        ("0/day", "greater than zero"),
        ("50/fortnight", "unknown budget period"),
        ("50/", "missing period"),
        ("1.0000001/day", "6 decimal places"),
        ("1,00/day", "invalid amount"),
        ("1e3/day", "invalid amount"),
        ("nan", "invalid amount"),
        ("$$5/day", "invalid amount"),
        ("99999999999999999999/day", "too large"),
    ],
)
def test_parse_budget_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_budget(text)


@pytest.mark.parametrize(
    ("budget", "text"),
    [
        (Budget(50_000_000, Period.DAY), "$50.00/day"),
        (Budget(1_000_500_000, Period.MONTH), "$1,000.50/month"),
        (Budget(100_000_000, Period.LIFETIME), "$100.00"),
        (Budget(12_500, Period.WEEK), "$0.0125/week"),
    ],
)
def test_format_budget_round_trips(budget: Budget, text: str) -> None:
    assert format_budget(budget) == text
    assert str(budget) == text
    assert parse_budget(text) == budget


def test_amount_helpers() -> None:
    assert parse_amount_micros("$3.75") == 3_750_000
    assert format_amount(0) == "$0.00"
    assert format_amount(-1_500_000) == "-$1.50"


def test_period_numbers_match_the_proto_enum() -> None:
    from gwapi.v1 import common_pb2 as pb

    assert int(Period.DAY) == pb.PERIOD_DAY
    assert int(Period.WEEK) == pb.PERIOD_WEEK
    assert int(Period.MONTH) == pb.PERIOD_MONTH
    assert int(Period.LIFETIME) == pb.PERIOD_LIFETIME


def test_amounts_take_ascii_digits_only() -> None:
    # "١٠" (Arabic-Indic ten) is a \d to Python's re; the documented grammar is ASCII.
    with pytest.raises(InvalidArgument, match="invalid amount"):
        parse_budget("١٠/day")
