"""When Claude Code's own cost and the gateway's metered cost are said to disagree."""

from __future__ import annotations

import pytest

from gwcommon.activity import cost_disagreement, usd


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "$0.0000"),
        (32_610, "$0.0326"),
        (49, "$0.0000"),
        (50, "$0.0001"),
        (12_345_678_900, "$12,345.6789"),
    ],
)
def test_usd(micros: int, text: str) -> None:
    assert usd(micros) == text


def test_agreement_within_tolerance_is_silent() -> None:
    assert cost_disagreement(1_000_000, 1_049_000) is None  # 4.7 %
    assert cost_disagreement(1_000_000, 1_000_000) is None
    assert cost_disagreement(100, 1_000) is None  # 90 % apart, but less than a cent
    assert cost_disagreement(5_000_000, 0) is None  # no self-reported cost: nothing to compare


def test_disagreement_says_by_how_much_and_why() -> None:
    high = cost_disagreement(1_000_000, 1_100_000)
    assert high is not None
    assert "$1.1000" in high and "$1.0000" in high and "9.0 % apart" in high
    assert "not have gone through this gateway" in high
    low = cost_disagreement(1_100_000, 1_000_000)
    assert low is not None and "prices may be higher" in low
    nothing = cost_disagreement(0, 200_000)
    assert nothing is not None and "metered nothing" in nothing


def test_tolerance_is_configurable() -> None:
    assert cost_disagreement(1_000_000, 1_030_000, tolerance_percent=2) is not None
    assert cost_disagreement(1_000_000, 1_030_000) is None
