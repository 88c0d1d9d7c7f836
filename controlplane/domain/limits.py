"""Limits on a key or a workspace: budgets and rate limits. Zero means "no limit".

:class:`Limits` is the domain value; it is stored as JSON text (:func:`limits_to_json`) and
converted to/from ``gwapi.v1.Limits`` outside the domain package.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from controlplane.domain.budgets import Budget, Period, format_budget
from controlplane.domain.errors import InvalidArgument

INT32_MAX = 2**31 - 1
RATE_FIELDS = ("rpm", "rph", "tpm", "max_parallel")
LIMIT_FIELDS = ("budgets", *RATE_FIELDS)


@dataclass(frozen=True, slots=True)
class Limits:
    budgets: tuple[Budget, ...] = field(default_factory=tuple)
    rpm: int = 0
    rph: int = 0
    tpm: int = 0
    max_parallel: int = 0


def validate_limits(limits: Limits, what: str = "limits") -> Limits:
    """Check the rules and return the canonical form (budgets sorted by period).

    Rules: every rate is 0 (no limit) or positive and fits int32; every budget is positive; at
    most one budget per period (two daily caps would be ambiguous).
    """
    for name in RATE_FIELDS:
        value = getattr(limits, name)
        if value < 0:
            raise InvalidArgument(f"{what}.{name} must not be negative (0 means no limit)")
        if value > INT32_MAX:
            raise InvalidArgument(f"{what}.{name} is too large")
    seen: dict[Period, Budget] = {}
    for budget in limits.budgets:
        if budget.amount_micros <= 0:
            raise InvalidArgument(
                f"{what}: a budget must be greater than zero (remove it to lift the cap)"
            )
        if budget.period in seen:
            raise InvalidArgument(
                f"{what}: at most one budget per period, got {format_budget(seen[budget.period])}"
                f" and {format_budget(budget)}"
            )
        seen[budget.period] = budget
    return replace(limits, budgets=tuple(seen[p] for p in sorted(seen)))


def apply_limits_mask(current: Limits, incoming: Limits, fields: Iterable[str]) -> Limits:
    """Copy the named sub-fields (``budgets``, ``rpm``…) from ``incoming`` onto ``current``."""
    changes: dict[str, Any] = {}
    for name in fields:
        if name not in LIMIT_FIELDS:
            raise InvalidArgument(
                f"unknown field limits.{name}: use one of {', '.join(LIMIT_FIELDS)}"
            )
        changes[name] = getattr(incoming, name)
    return replace(current, **changes)


def limits_to_json(limits: Limits) -> str:
    """Stable JSON text (sorted keys) for the database."""
    doc = {
        "budgets": [
            {"amount_micros": b.amount_micros, "period": b.period.word} for b in limits.budgets
        ],
        "rpm": limits.rpm,
        "rph": limits.rph,
        "tpm": limits.tpm,
        "max_parallel": limits.max_parallel,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=4096)
def limits_from_json(text: str | None) -> Limits:
    """Inverse of :func:`limits_to_json`; empty or ``None`` means no limits. Cached by text
    (``Limits`` is immutable): snapshot seeds and budget alerts parse the same few documents for
    thousands of developers."""
    if not text:
        return Limits()
    doc = json.loads(text)
    budgets = tuple(
        Budget(int(b["amount_micros"]), Period[str(b["period"]).upper()])
        for b in doc.get("budgets", [])
    )
    return Limits(
        budgets=budgets,
        rpm=int(doc.get("rpm", 0)),
        rph=int(doc.get("rph", 0)),
        tpm=int(doc.get("tpm", 0)),
        max_parallel=int(doc.get("max_parallel", 0)),
    )
