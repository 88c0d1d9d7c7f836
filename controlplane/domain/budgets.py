"""Budgets: ``AMOUNT/PERIOD`` in dollars, held as integer micro-dollars.

Grammar (case-insensitive, surrounding spaces ignored)::

    budget := ["$"] amount ["/" period]
    amount := digits ["." digits]  |  d{1,3} ("," ddd)+ ["." digits]   (at most 6 decimals)
    period := day | daily | week | weekly | month | monthly | lifetime | total

No period means a lifetime total. Amounts go through :class:`~decimal.Decimal`, never floats:
``"$1,000.50/month"`` is exactly ``Budget(1_000_500_000, Period.MONTH)``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from controlplane.domain.errors import InvalidArgument, shown
from gwcommon import money

MICROS_PER_USD = 1_000_000
MAX_MICROS = 2**63 - 1


class Period(enum.IntEnum):
    """Budget periods; the numbers equal ``gwapi.v1.Period`` so conversion is ``int()``."""

    DAY = 1
    WEEK = 2
    MONTH = 3
    LIFETIME = 4

    @property
    def word(self) -> str:
        return self.name.lower()


_PERIOD_WORDS: dict[str, Period] = {
    "day": Period.DAY,
    "daily": Period.DAY,
    "week": Period.WEEK,
    "weekly": Period.WEEK,
    "month": Period.MONTH,
    "monthly": Period.MONTH,
    "lifetime": Period.LIFETIME,
    "total": Period.LIFETIME,
}
_AMOUNT_RE = re.compile(r"^\$?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)$", re.ASCII)


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending cap: ``amount_micros`` (> 0) per ``period``."""

    amount_micros: int
    period: Period

    def __str__(self) -> str:
        return format_budget(self)


def parse_period(word: str) -> Period:
    """``"day"``/``"daily"`` → :attr:`Period.DAY` etc.; raises :class:`InvalidArgument`."""
    period = _PERIOD_WORDS.get(word.strip().lower())
    if period is None:
        raise InvalidArgument(
            f"unknown budget period {shown(word)}: use day, week, month or lifetime"
        )
    return period


def parse_amount_micros(text: str) -> int:
    """Dollar amount → micro-dollars (``"$1,000.50"`` → ``1_000_500_000``); must be > 0."""
    raw = text.strip()
    if not _AMOUNT_RE.fullmatch(raw):
        raise InvalidArgument(
            f"invalid amount {shown(text)}: use dollars such as '50', '$1,000.50' or '0.25'"
        )
    try:
        dollars = Decimal(raw.lstrip("$").replace(",", ""))
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise InvalidArgument(f"invalid amount {shown(text)}") from exc
    micros = dollars * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise InvalidArgument(f"invalid amount {shown(text)}: at most 6 decimal places")
    value = int(micros)
    if value <= 0:
        raise InvalidArgument(f"invalid amount {shown(text)}: a budget must be greater than zero")
    if value > MAX_MICROS:
        raise InvalidArgument(f"invalid amount {shown(text)}: too large")
    return value


def parse_budget(text: str) -> Budget:
    """Parse ``"50/day"``, ``"$1,000.50/month"``, ``"20/week"`` or ``"100"`` (lifetime)."""
    if not text or not text.strip():
        raise InvalidArgument("empty budget: use AMOUNT/PERIOD, e.g. '50/day' or '$200/month'")
    amount, sep, period = text.strip().partition("/")
    if sep and not period.strip():
        raise InvalidArgument(f"invalid budget {shown(text)}: missing period after '/'")
    return Budget(
        amount_micros=parse_amount_micros(amount),
        period=parse_period(period) if sep else Period.LIFETIME,
    )


def format_amount(micros: int) -> str:
    """``50_000_000`` → ``"$50.00"``; sub-cent amounts keep their digits (``"$0.0125"``)."""
    return money.dollars(micros)


def format_budget(budget: Budget) -> str:
    """``Budget(50_000_000, DAY)`` → ``"$50.00/day"``; lifetime budgets have no suffix."""
    amount = format_amount(budget.amount_micros)
    if budget.period is Period.LIFETIME:
        return amount
    return f"{amount}/{budget.period.word}"
