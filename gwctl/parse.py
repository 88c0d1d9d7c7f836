"""Parsers for the values operators type: budgets, durations, lists, ``k=v`` options.

Each parser raises ``argparse.ArgumentTypeError`` with a message that says what was expected, so
they plug straight into ``add_argument(type=...)`` and bad input exits 2 with a usage line.

Money never goes through a float: ``"$1,000.50/month"`` → ``Decimal("1000.50")`` → exactly
``1_000_500_000`` micro-dollars, and amounts finer than one micro-dollar are refused, not rounded.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from gwapi.v1 import common_pb2
from gwcommon import durations, money
from gwcommon.durations import DURATION_HELP as DURATION_HELP
from gwcommon.durations import MAX_DURATION_S as MAX_DURATION_S
from gwcommon.money import AMOUNT_RE as _AMOUNT

_INT32_MAX = 2**31 - 1

PERIODS: dict[str, common_pb2.Period.ValueType] = {
    "day": common_pb2.PERIOD_DAY,
    "week": common_pb2.PERIOD_WEEK,
    "month": common_pb2.PERIOD_MONTH,
    "lifetime": common_pb2.PERIOD_LIFETIME,
}
PERIOD_NAMES: dict[common_pb2.Period.ValueType, str] = {v: k for k, v in PERIODS.items()}
# The words the control plane's budget grammar also accepts.
_PERIOD_ALIASES = {"daily": "day", "weekly": "week", "monthly": "month", "total": "lifetime"}


BUDGET_HELP = "AMOUNT[/day|/week|/month|/lifetime], e.g. 50/day, '$1,000.50/month', 100 (lifetime)"


_shown = durations.shown


def usd_to_micros(text: str) -> int:
    """``"$1,000.50"`` → ``1_000_500_000``. Exact; refuses sub-micro-dollar precision."""
    try:
        return money.parse_usd(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid amount {text.strip()!r}: {exc}") from None


def parse_budget(text: str) -> common_pb2.Budget:
    """``"50/day"`` → ``Budget(amount_micros=50_000_000, period=PERIOD_DAY)``.

    No period (``"100"``) or ``/lifetime`` means a lifetime total that never resets.
    """
    raw = text.strip()
    amount_text, sep, period_text = raw.partition("/")
    period_name = period_text.strip().lower() if sep else "lifetime"
    period_name = _PERIOD_ALIASES.get(period_name, period_name)
    if period_name not in PERIODS:
        raise argparse.ArgumentTypeError(
            f"invalid budget {raw!r}: unknown period {period_text.strip()!r} "
            f"(expected day, week, month or lifetime)"
        )
    try:
        micros = money.parse_usd(amount_text)
    except ValueError as exc:
        reason = str(exc) if _AMOUNT.match(amount_text.strip().removeprefix("$").strip()) else ""
        raise argparse.ArgumentTypeError(
            f"invalid budget {raw!r}: {reason or 'expected ' + BUDGET_HELP}"
        ) from None
    if micros <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid budget {raw!r}: the amount must be greater than 0"
        )
    return common_pb2.Budget(amount_micros=micros, period=PERIODS[period_name])


def parse_duration(text: str) -> int:
    """``"30d"`` → 2_592_000 seconds (the grammar of :mod:`gwcommon.durations`)."""
    try:
        return durations.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


MOMENT_HELP = (
    "a duration before now (7d, 12h) or a UTC date or time (2026-11-01, 2026-11-01T09:00, "
    "2026-11-01T09:00:00+01:00)"
)
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$", re.ASCII)
_DATE_START = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


@dataclass(frozen=True)
class Moment:
    """A point in time given on the command line: ``at_ms`` (absolute) or ``ago_s`` before now."""

    at_ms: int = 0
    ago_s: int = 0

    def resolve(self, now_ms: int) -> int:
        return self.at_ms if self.at_ms else now_ms - self.ago_s * 1000


def _utc_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a date or time without an offset is UTC
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def parse_moment(text: str) -> Moment:
    """``"7d"`` → 7 days before now; ``"2026-11-01"`` (UTC midnight), ``"2026-11-01T09:00Z"``
    or with an offset → that instant."""
    raw = text.strip()
    if not _DATE_START.match(raw):
        try:
            return Moment(ago_s=parse_duration(raw))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"invalid time {_shown(text)}: expected {MOMENT_HELP}"
            ) from None
    try:
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {_shown(text)}: expected {MOMENT_HELP}"
        ) from None
    if moment.year < 1970:
        raise argparse.ArgumentTypeError(f"invalid time {_shown(text)}: before 1970")
    return Moment(at_ms=max(1, _utc_ms(moment)))


def parse_month(text: str) -> tuple[int, int]:
    """``"2026-11"`` → the UTC calendar month as ``[start_ms, end_ms)``."""
    match = _MONTH.fullmatch(text.strip())
    year, month = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or not 1970 <= year <= 9998 or not 1 <= month <= 12:
        raise argparse.ArgumentTypeError(
            f"invalid month {_shown(text)}: expected YYYY-MM, e.g. 2026-11"
        )
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return _utc_ms(start), _utc_ms(end)


def parse_count(text: str) -> int:
    """A non-negative int32 for rate limits; 0 means "no limit"."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: expected an integer") from None
    if value < 0 or value > _INT32_MAX:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: expected 0..{_INT32_MAX}")
    return value


def parse_list(text: str) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_weights(text: str) -> list[int]:
    """``"3,1"`` → ``[3, 1]``; each weight is a positive integer."""
    weights = []
    for part in parse_list(text):
        try:
            weight = int(part)
        except ValueError:
            weight = 0
        if weight <= 0 or weight > _INT32_MAX:
            raise argparse.ArgumentTypeError(
                f"invalid weight {part!r}: weights are positive integers such as 3,1"
            )
        weights.append(weight)
    return weights


def parse_option(text: str) -> tuple[str, str]:
    """``"region=us-east-1"`` → ``("region", "us-east-1")``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"invalid option {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


_SECONDS_VALUE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?$", re.ASCII)
_SECONDS_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_SECONDS_UNITS["d"] = Decimal(86400)
SECONDS_HELP = "seconds such as 30 or 2.5 (or with a unit: 500ms, 30s, 5m, 1h); 0 = the default"


def _seconds(text: str) -> Decimal:
    match = _SECONDS_VALUE.fullmatch(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: expected {SECONDS_HELP}")
    return Decimal(match.group(1)) * _SECONDS_UNITS[match.group(2) or "s"]


def parse_seconds_ms(text: str) -> int:
    """``"2.5"`` (seconds) → ``2500`` milliseconds; ``"500ms"``, ``"30s"``, ``"5m"`` too; ≥ 0.

    Finer than a millisecond is refused rather than rounded.
    """
    ms = _seconds(text) * 1000
    if ms != ms.to_integral_value():
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: at most millisecond precision")
    if ms > _INT32_MAX:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: too large")
    return int(ms)


def parse_whole_seconds(text: str) -> int:
    """``"300"`` / ``"5m"`` → ``300``: a whole number of seconds, ≥ 0."""
    value = _seconds(text)
    if value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: expected whole seconds")
    if value > _INT32_MAX:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: too large")
    return int(value)


def parse_statuses(text: str) -> list[int]:
    """``"429,500,529"`` → ``[429, 500, 529]``: HTTP error statuses (400-599)."""
    statuses: list[int] = []
    for part in parse_list(text):
        # isascii(): "4²9".isdigit() is True, but int() cannot read it; len(): nor 5000 digits.
        if (
            not (part.isascii() and part.isdigit() and len(part) == 3)
            or not 400 <= int(part) <= 599
        ):
            raise argparse.ArgumentTypeError(
                f"invalid status {part!r}: expected HTTP error statuses (400-599) such as 429,529"
            )
        statuses.append(int(part))
    return statuses


def parse_target_model(text: str) -> tuple[str, str]:
    """``"bedrock=eu.anthropic.claude-x-v1:0"`` → ``("bedrock", "eu.anthropic.claude-x-v1:0")``.

    An empty model (``"bedrock="``) removes the override.
    """
    provider, sep, model = text.partition("=")
    if not sep or not provider.strip():
        raise argparse.ArgumentTypeError(
            f"invalid target model {text!r}: expected PROVIDER=MODEL, e.g. "
            "vertex=claude-sonnet-4-5@20250929"
        )
    model = model.strip()
    if any(c.isspace() for c in model):
        raise argparse.ArgumentTypeError(f"invalid target model {text!r}: no spaces in a model id")
    return provider.strip(), model


def format_seconds_ms(ms: int) -> str:
    """``2500`` → ``"2.5s"``; ``0`` → ``"default"``."""
    if ms <= 0:
        return "default"
    whole, frac = divmod(ms, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + "s" if frac else f"{whole}s"
