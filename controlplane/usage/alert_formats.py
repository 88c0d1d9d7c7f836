"""The body a budget alert's webhook receives, per the workspace's ``alert_format``.

* ``generic`` (the default): Tollgate's JSON document (:func:`generic_payload`) — every field of
  the alert, and ``text``, its one-line description (:func:`controlplane.domain.spend.alert_text`).
* ``slack``: a Slack incoming-webhook message, ``{"text": "…"}`` (:func:`slack_payload`), one
  line a person reads in the channel: who, which budget, how much, when it resets (local time of
  the budget's time zone), e.g. *Budget alert: developer alice@example.com (workspace platform)
  has spent $40.12 of $50.00/day (80.2 %); it resets at 2026-12-07 00:00 Europe/Berlin.* Slack
  reads ``<…>`` as links and mentions and ``&`` as an entity, so those three characters are
  escaped as Slack asks (``&amp;``, ``&lt;``, ``&gt;``): a key named ``<!channel>`` notifies nobody.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane.domain.budgets import Budget, Period, format_budget
from controlplane.domain.spend import format_ms, format_percent, format_spent
from controlplane.store.models.usage import BudgetAlertRow
from gwcommon.periods import zone

GENERIC = "generic"
SLACK = "slack"


def _budget(row: BudgetAlertRow) -> Budget:
    return Budget(row.amount_micros, Period[row.period.upper()])


def generic_payload(row: BudgetAlertRow, text: str) -> dict[str, Any]:
    """Tollgate's own JSON document (``alert_format`` generic)."""
    return {
        "type": "budget_alert",
        "text": text,
        "alert_id": row.id,
        "time": format_ms(row.time_ms),
        "time_ms": row.time_ms,
        "scope": row.scope,
        "id": row.scope_id,
        "name": row.name,
        "workspace": row.workspace,
        "threshold_percent": row.threshold_percent,
        "budget": format_budget(_budget(row)),
        "budget_amount_micros": row.amount_micros,
        "period": row.period,
        "period_id": row.period_id,
        "period_start": format_ms(row.period_start_ms) if row.period_end_ms else None,
        "period_start_ms": row.period_start_ms,
        "period_end": format_ms(row.period_end_ms) if row.period_end_ms else None,
        "period_end_ms": row.period_end_ms,
        "spent_micros": row.spent_micros,
        "spent_usd": f"{row.spent_micros // 1_000_000}.{row.spent_micros % 1_000_000:06d}",
    }


def slack_escape(text: str) -> str:
    """Slack's three control characters as the entities Slack asks for."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def local_time(ms: int, period_id: str) -> str:
    """``2026-12-07 00:00 Europe/Berlin``: ``ms`` in the time zone named by the period id
    (``day:2026-12-06@Europe/Berlin``), or UTC."""
    tz = period_id.rpartition("@")[2] if "@" in period_id else "UTC"
    try:
        where = zone(tz)
    except ValueError:  # a zone this host does not know (any more): say it in UTC
        tz, where = "UTC", zone("UTC")
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(where)
    return f"{moment:%Y-%m-%d %H:%M} {tz or 'UTC'}"


def slack_text(row: BudgetAlertRow) -> str:
    """The readable line (unescaped)."""
    if row.scope == "key":
        who = f"key '{row.name}' (workspace {row.workspace})"
    elif row.scope == "developer":
        who = f"developer {row.name} (workspace {row.workspace})"
    else:
        who = f"workspace {row.workspace}"
    budget = _budget(row)
    of = (
        f"its {format_budget(budget)} lifetime budget"
        if budget.period is Period.LIFETIME
        else format_budget(budget)
    )
    spent = (
        f"has spent {format_spent(row.spent_micros)} of {of} "
        f"({format_percent(row.spent_micros, row.amount_micros)})"
    )
    resets = (
        f"it resets at {local_time(row.period_end_ms, row.period_id)}" if row.period_end_ms else ""
    )
    if row.threshold_percent < 100:
        after = resets or "it never resets"
    else:  # spent: data planes refuse this scope's requests from now on
        after = f"requests are refused until {resets or 'the budget is raised'}"
    return f"Budget alert: {who} {spent}; {after}."


def slack_payload(row: BudgetAlertRow) -> dict[str, Any]:
    """A Slack incoming-webhook message."""
    return {"text": slack_escape(slack_text(row))}


def payload(fmt: str, row: BudgetAlertRow, text: str) -> dict[str, Any]:
    return slack_payload(row) if fmt == SLACK else generic_payload(row, text)
