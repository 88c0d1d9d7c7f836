"""Budget periods, spend against a budget, and the 50/80/100 % alert thresholds (pure rules).

Contract:

* :func:`current_window` is the budget's current calendar period in the workspace's time zone,
  computed by :func:`gwcommon.periods.period_window` (the data plane uses the same function), as
  Unix milliseconds: ``start_ms <= now_ms < end_ms``. A lifetime budget's window is
  ``(0, 0)``: it starts at the epoch and never ends (``end_ms == 0`` means "never").
* :func:`thresholds_reached` lists the alert thresholds a spend has reached, with integer
  arithmetic only: ``spent * 100 >= amount * threshold``.
* :func:`alert_text` is the one-line description of an alert (log line, webhook ``text``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controlplane.domain.budgets import Budget, Period, format_amount, format_budget
from gwcommon.periods import period_id, period_window

THRESHOLDS = (50, 80, 100)


@dataclass(frozen=True, slots=True)
class Window:
    """A budget period as Unix milliseconds; ``end_ms == 0`` for a lifetime budget."""

    period: Period
    start_ms: int
    end_ms: int
    id: str  # gwcommon.periods.period_id: "day:2026-11-29@Europe/Berlin", "lifetime"

    @property
    def bounded(self) -> bool:
        return self.end_ms > 0


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def current_window(period: Period, now_ms: int, tz: str = "") -> Window:
    """The period containing ``now_ms`` in time zone ``tz`` (``""`` = UTC).

    Raises ``ValueError`` for an unknown time zone (validated when the workspace is saved).
    """
    if period is Period.LIFETIME:
        return Window(period, 0, 0, "lifetime")
    start, end = period_window(period.word, _from_ms(now_ms), tz)
    return Window(period, _to_ms(start), _to_ms(end), period_id(period.word, start, tz))


def thresholds_reached(spent_micros: int, amount_micros: int) -> tuple[int, ...]:
    """The thresholds (percent of ``amount_micros``) that ``spent_micros`` has reached."""
    if amount_micros <= 0:
        return ()
    return tuple(t for t in THRESHOLDS if spent_micros * 100 >= amount_micros * t)


def percent_tenths(spent_micros: int, amount_micros: int) -> int:
    """Spend as tenths of a percent, rounded down (99.96 % is 999, never a premature 1000)."""
    if amount_micros <= 0:
        return 0
    return spent_micros * 1000 // amount_micros


def format_percent(spent_micros: int, amount_micros: int) -> str:
    """``"24.7 %"``."""
    tenths = percent_tenths(spent_micros, amount_micros)
    return f"{tenths // 10}.{tenths % 10} %"


def format_ms(ms: int) -> str:
    """``2026-11-29T00:00:00Z``."""
    return _from_ms(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_spent(micros: int) -> str:
    """Spend rounded half-up to cents: ``12_345_678`` → ``"$12.35"``."""
    return format_amount((micros + 5_000) // 10_000 * 10_000)


def alert_text(
    *,
    scope: str,
    name: str,
    workspace: str,
    threshold: int,
    budget: Budget,
    spent_micros: int,
    window: Window,
) -> str:
    """``Key 'alice' (workspace team-a) reached 80 % of its budget of $50.00/day: $40.01
    spent (80.0 %); it resets at 2026-11-29T00:00:00Z.``"""
    if scope == "key":
        who = f"Key {name!r} (workspace {workspace})"
    elif scope == "developer":
        who = f"Developer {name!r} (workspace {workspace})"
    else:
        who = f"Workspace {workspace!r}"
    resets = f"it resets at {format_ms(window.end_ms)}" if window.bounded else "it never resets"
    return (
        f"{who} reached {threshold} % of its budget of {format_budget(budget)}: "
        f"{format_spent(spent_micros)} spent "
        f"({format_percent(spent_micros, budget.amount_micros)}); {resets}."
    )
