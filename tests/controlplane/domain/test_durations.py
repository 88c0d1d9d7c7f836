import pytest

from controlplane.domain.durations import format_duration, parse_duration
from controlplane.domain.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 2_592_000),
        ("12h", 43_200),
        ("90m", 5_400),
        ("3600s", 3_600),
        ("2w", 1_209_600),
        ("45", 45),
        (" 7D ", 604_800),
    ],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "-1h", "1.5h", "10y", "h", "1 day", "3600ms"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(InvalidArgument, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (61, "61s"), (5_400, "90m"), (86_400, "1d"), (604_800, "1w")]
)
def test_format(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    if seconds:
        assert parse_duration(text) == seconds
