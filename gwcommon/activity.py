"""Claude Code's self-reported cost next to the gateway's metered cost: when to say they differ.

Shared by ``gwctl usage --by developer`` and the TUI's Developers view (both show a developer's
metered ``cost_micros`` and the client's own ``client_cost_micros`` from ``QueryUsage``).

:func:`cost_disagreement` returns a sentence when the two differ by more than
``tolerance_percent`` of the larger one *and* by at least ``min_micros`` (tiny sums disagree by
rounding alone), else None. With no self-reported cost there is nothing to compare (telemetry
off, or not reaching this gateway): None. Activity is summed per UTC day while metered usage
is exact to the millisecond, so compare windows that start and end at UTC midnight (``--since
7d`` style windows rounded to days), or expect a partial first day to disagree. Integer
arithmetic only; no float touches money. Stdlib only.
"""

from __future__ import annotations

from gwcommon import money

TOLERANCE_PERCENT = 5
MIN_MICROS = 10_000  # one cent


def usd(micros: int) -> str:
    """``32_610`` → ``"$0.0326"`` (four decimals, rounded half up)."""
    return money.four_places(micros)


def cost_disagreement(
    metered_micros: int,
    client_micros: int,
    tolerance_percent: int = TOLERANCE_PERCENT,
    min_micros: int = MIN_MICROS,
) -> str | None:
    """A readable warning when the client's estimate and the metered cost disagree, else None."""
    if client_micros <= 0:
        return None
    gap = abs(client_micros - metered_micros)
    larger = max(client_micros, metered_micros)
    if gap < min_micros or gap * 100 <= larger * tolerance_percent:
        return None
    tenths = gap * 1000 // larger
    apart = f"{tenths // 10}.{tenths % 10} % apart"
    if metered_micros <= 0:
        return (
            f"Claude Code reported {usd(client_micros)} but the gateway metered nothing: its "
            "requests did not go through this gateway"
        )
    if client_micros > metered_micros:
        why = (
            "some of its requests may not have gone through this gateway, or the gateway's "
            "prices are lower than the client's"
        )
    else:
        why = (
            "the gateway's prices may be higher than the client's (gwctl prices), or other "
            "clients used the same identity"
        )
    return (
        f"Claude Code reported {usd(client_micros)}, the gateway metered "
        f"{usd(metered_micros)} ({apart}): {why}"
    )
