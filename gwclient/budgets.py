"""Reading the budget statuses the admin API returns (``BudgetStatus``: a budget and its spend in
the current period), for every client that shows spend: gwctl's tables and the console's bars.
Integer arithmetic only: no float decides which budget is closest to running out.
"""

from __future__ import annotations

from collections.abc import Iterable

from gwapi.v1 import common_pb2

__all__ = ["main_budget"]


def main_budget(statuses: Iterable[common_pb2.BudgetStatus]) -> common_pb2.BudgetStatus | None:
    """The budget closest to running out (highest spent/amount ratio; the first of equals);
    ``None`` when no status has a positive amount."""
    best: common_pb2.BudgetStatus | None = None
    for st in statuses:
        if st.budget.amount_micros <= 0:
            continue
        if best is None or (
            st.spent_micros * best.budget.amount_micros
            > best.spent_micros * st.budget.amount_micros
        ):
            best = st
    return best
