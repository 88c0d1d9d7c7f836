"""The price table's value objects both planes share refuse amounts that are not micro-dollars."""

from __future__ import annotations

import pytest

from gwcommon.price_rates import NO_TOOL_FEES, PriceEntry, Rates, ToolRates


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_a_rate_must_be_a_non_negative_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="rate cache_read must be a non-negative integer"):
        Rates(1, 1, 1, 1, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate web_fetch_per_1k must be a non-negative integer"):
        ToolRates(0, bad)  # type: ignore[arg-type]


def test_an_entry_without_tool_fees_charges_none() -> None:
    entry = PriceEntry("claude-x", "opus", True, Rates(0, 0, 0, 0, 0))
    assert entry.tools == NO_TOOL_FEES == ToolRates(0, 0)
