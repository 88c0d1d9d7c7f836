"""gwcommon.money: exact parsing and each named spelling, byte for byte as its callers show it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwcommon import money


@pytest.mark.parametrize(
    ("text", "micros"),
    [("50", 50_000_000), ("$1,000.50", 1_000_500_000), (" $ 0.000001 ", 1), (".25", 250_000)],
)
def test_parse(text: str, micros: int) -> None:
    assert money.parse_usd(text) == micros


@pytest.mark.parametrize(
    ("text", "reason"),
    [("1.0000001", "at most 6 decimal places"), ("1,00", "expected dollars"),
     ("-5", "expected dollars"), ("9" * 20, "too large"), ("", "expected dollars")],
)  # fmt: skip
def test_parse_refusals(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        money.parse_usd(text)


@pytest.mark.parametrize(
    ("micros", "decimal", "budget", "dollars", "cents", "four", "glance"),
    [
        (0, "0.000000", "$0", "$0.00", "$0.00", "$0.0000", "$0"),
        (12_345, "0.012345", "$0.012345", "$0.012345", "$0.01", "$0.0123", "$0.01"),
        (1_234, "0.001234", "$0.001234", "$0.001234", "$0.00", "$0.0012", "$0.0012"),
        (50_000_000, "50.000000", "$50", "$50.00", "$50.00", "$50.0000", "$50.00"),
        (1_000_500_000, "1000.500000", "$1,000.50", "$1,000.50", "$1,000.50", "$1,000.5000",
         "$1,000"),
        (-12_345_678, "-12.345678", "-$12.345678", "-$12.345678", "-$12.35", "-$12.3457",
         "-$12.35"),
    ],
)  # fmt: skip
def test_spellings(
    micros: int, decimal: str, budget: str, dollars: str, cents: str, four: str, glance: str
) -> None:
    assert money.decimal(micros) == decimal
    assert money.budget(micros) == budget
    assert money.dollars(micros) == dollars
    assert money.cents(micros) == cents
    assert money.four_places(micros) == four
    assert money.glance(micros) == glance


def test_decimal_places_round_half_up_and_dollars_round_up_to_the_cent() -> None:
    assert money.decimal(12_345_678, 2) == "12.35" and money.decimal(12_344_999, 0) == "12"
    assert money.dollars(10_001, round_up=True) == "$0.02"
    assert money.dollars(-10_001, round_up=True) == "-$0.02"
    assert money.dollars(20_000, round_up=True) == "$0.02"


@settings(max_examples=300, deadline=None)
@given(st.integers(0, money.MAX_MICROS))
def test_budget_and_dollars_read_back_exactly(micros: int) -> None:
    assert money.parse_usd(money.budget(micros)) == micros
    assert money.parse_usd(money.dollars(micros)) == micros
    assert money.parse_usd(money.decimal(micros)) == micros
