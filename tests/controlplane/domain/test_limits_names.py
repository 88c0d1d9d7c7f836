import pytest

from controlplane.domain.budgets import Budget, Period
from controlplane.domain.errors import InvalidArgument
from controlplane.domain.limits import (
    Limits,
    apply_limits_mask,
    limits_from_json,
    limits_to_json,
    validate_limits,
)
from controlplane.domain.names import validate_label, validate_slug, validate_timezone


def test_validate_limits_sorts_budgets() -> None:
    lim = Limits(budgets=(Budget(5, Period.MONTH), Budget(1, Period.DAY)), rpm=10)
    assert validate_limits(lim).budgets == (Budget(1, Period.DAY), Budget(5, Period.MONTH))


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (Limits(rpm=-1), "rpm must not be negative"),
        (Limits(max_parallel=-3), "max_parallel must not be negative"),
        (Limits(tpm=2**31), "too large"),
        (Limits(budgets=(Budget(1, Period.DAY), Budget(2, Period.DAY))), "one budget per period"),
        (Limits(budgets=(Budget(0, Period.DAY),)), "greater than zero"),
    ],
)
def test_validate_limits_errors(limits: Limits, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_limits(limits)


def test_limits_json_round_trip() -> None:
    lim = Limits(budgets=(Budget(50_000_000, Period.DAY),), rpm=1, rph=2, tpm=3, max_parallel=4)
    assert limits_from_json(limits_to_json(lim)) == lim
    assert limits_from_json("") == Limits()
    assert limits_from_json("{}") == Limits()


def test_apply_limits_mask() -> None:
    cur = Limits(rpm=1, rph=2)
    new = Limits(rpm=10, rph=20, budgets=(Budget(1, Period.WEEK),))
    assert apply_limits_mask(cur, new, ["rpm"]) == Limits(rpm=10, rph=2)
    with pytest.raises(InvalidArgument, match=r"unknown field limits\.foo"):
        apply_limits_mask(cur, new, ["foo"])


@pytest.mark.parametrize("name", ["a", "team-a", "team_a.v2", "0abc", "a" * 63])
def test_slug_ok(name: str) -> None:
    assert validate_slug(name, "workspace name") == name


@pytest.mark.parametrize("name", ["", "Team", "-a", ".a", "a b", "a/b", "a" * 64, "é"])
def test_slug_bad(name: str) -> None:
    with pytest.raises(InvalidArgument, match="workspace name"):
        validate_slug(name, "workspace name")


def test_label_and_timezone() -> None:
    assert validate_label("Alice's laptop", "key name") == "Alice's laptop"
    with pytest.raises(InvalidArgument, match="control characters"):
        validate_label("a\nb", "key name")
    with pytest.raises(InvalidArgument, match="too long"):
        validate_label("x" * 101, "key name")
    assert validate_timezone("") == ""
    assert validate_timezone("UTC") == "UTC"
    assert validate_timezone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(InvalidArgument, match="unknown time zone"):
        validate_timezone("Mars/Olympus")
