"""Budget alerts: crossing 50/80/100 % of a budget, recorded once per period, POSTed to a webhook.

Contract:

* Detection reads no spend of its own. The snapshot cache's spend refresh
  (:mod:`controlplane.snapshots.spend_seeds`), which ingest requests for the scopes it touched
  and the periodic sweep for every scope, computes each dirty scope's budgets and spend with
  :func:`controlplane.usage.spend.current_spend` for the data planes' seeds; on the leader the
  same values are handed to ``AlertMonitor.observe`` (:mod:`controlplane.usage.alert_monitor`),
  so an alert and the seed the data planes enforce are one computation. ``observe`` returns at
  once: it keeps the thresholds reached (:func:`candidates`) that this monitor has not seen
  recorded, and a background task records them (:func:`unrecorded`, then :func:`record`). Nothing here can slow down, block or
  fail an ingest; a failed recording is logged and the next refresh of the scope tries again.
  Only scopes the data planes serve are checked: a revoked key or a disabled developer spends
  nothing more.
* ``AlertMonitor.check`` (and :func:`detect`) does the whole detection from the database for
  given scopes, for tools and tests.
* Once: ``budget_alert`` has a unique constraint on (scope, id, period, period_start_ms,
  threshold) and rows are inserted with ``ON CONFLICT DO NOTHING … RETURNING``, so concurrent
  ingests, replayed batches, several control planes on one PostgreSQL and restarts record each
  alert exactly once, and only the process whose insert won delivers its webhook.
* Webhook: when the workspace has ``alert_webhook``, the alert is POSTed as JSON in the
  workspace's ``alert_format`` (:mod:`controlplane.usage.alert_formats`: ``generic`` or
  ``slack``, fixed when the alert is recorded) in a background task by
  :func:`controlplane.usage.webhooks.post_webhook`: ``timeout_s`` per attempt, ``attempts``
  tries with jittered exponential backoff (honouring ``Retry-After`` up to ``max_delay_s``) on
  connection errors, timeouts, 408, 429 and 5xx; redirects are not followed; internal
  destinations are refused unless ``allow_internal``. Every try is recorded on the row
  (``webhook_attempts``, ``webhook_last_attempt_ms``, ``webhook_next_attempt_ms``) and its
  ``webhook_status`` goes ``pending`` → ``retrying: <coarse reason>`` → ``delivered`` |
  ``failed: <coarse reason>`` | ``refused: …`` (``""`` when no webhook is configured), never a
  response or error detail. A delivery still under way when the monitor closes (shutdown) is
  not resumed later: its row says :data:`INTERRUPTED` (with the attempts made so far).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from controlplane.catalog.common import in_workspaces
from controlplane.domain.budgets import Budget, Period
from controlplane.domain.errors import InvalidArgument
from controlplane.domain.spend import Window, alert_text, thresholds_reached
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.usage import BudgetAlertRow
from controlplane.usage import alert_formats
from controlplane.usage.spend import IN_CHUNK, BudgetSpend, current_spend, scopes_for
from controlplane.usage.webhooks import (
    RETRYING,
    AttemptReport,
)
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PENDING = "pending"
INTERRUPTED = "failed: interrupted (the control plane stopped)"
_UNIQUE = ("scope", "scope_id", "period", "period_start_ms", "threshold_percent")


@dataclass(frozen=True)
class RecordedAlert:
    """A newly recorded alert and where to deliver it (``webhook`` ``""`` = nowhere)."""

    row: BudgetAlertRow
    alert: tpb.BudgetAlert
    text: str
    webhook: str


def identity(values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[name] for name in _UNIQUE)


def candidates(spends: Iterable[BudgetSpend], now_ms: int) -> list[dict[str, Any]]:
    """Row values of every threshold these budgets' spend has reached (pure)."""
    out: list[dict[str, Any]] = []
    for spend in spends:
        scope, budget, window = spend.scope, spend.budget, spend.window
        for threshold in thresholds_reached(spend.spent_micros, budget.amount_micros):
            out.append(
                {
                    "time_ms": now_ms,
                    "scope": scope.kind,
                    "scope_id": scope.id,
                    "name": scope.name,
                    "workspace": scope.workspace,
                    "threshold_percent": threshold,
                    "period": budget.period.word,
                    "period_id": window.id,
                    "amount_micros": budget.amount_micros,
                    "period_start_ms": window.start_ms,
                    "period_end_ms": window.end_ms,
                    "spent_micros": spend.spent_micros,
                }
            )
    return out


def unrecorded(s: Session, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates not recorded yet (read only)."""
    if not found:
        return []
    ids = sorted({c["scope_id"] for c in found})
    starts = sorted({c["period_start_ms"] for c in found})
    known: set[tuple[Any, ...]] = set()
    for start in range(0, len(ids), IN_CHUNK):
        stmt = select(*(getattr(BudgetAlertRow, name) for name in _UNIQUE)).where(
            col(BudgetAlertRow.scope_id).in_(ids[start : start + IN_CHUNK]),
            col(BudgetAlertRow.period_start_ms).in_(starts),
        )
        known.update(tuple(row) for row in s.exec(stmt).all())
    return [c for c in found if identity(c) not in known]


def detect(
    s: Session,
    key_ids: Iterable[str],
    workspaces: Iterable[str],
    now_ms: int,
    developer_ids: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Row values of the alerts due for these scopes and not recorded yet, all read from the
    database (read only)."""
    scopes = scopes_for(s, key_ids=key_ids, workspaces=workspaces, developer_ids=developer_ids)
    return unrecorded(s, candidates(current_spend(s, scopes, now_ms), now_ms))


def record(s: Session, candidates: list[dict[str, Any]]) -> list[RecordedAlert]:
    """Insert the candidates; returns those this call inserted (a concurrent twin loses)."""
    names = sorted({c["workspace"] for c in candidates})
    hooks: dict[str, tuple[str, str]] = {
        name: (url, fmt or alert_formats.GENERIC)
        for name, url, fmt in s.exec(
            select(WorkspaceRow.name, WorkspaceRow.alert_webhook, WorkspaceRow.alert_format).where(
                col(WorkspaceRow.name).in_(names)
            )
        ).all()
    }
    dialect = s.get_bind().dialect.name
    insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = BudgetAlertRow.__table__  # type: ignore[attr-defined]
    recorded: list[RecordedAlert] = []
    for values in candidates:
        hook, fmt = hooks.get(values["workspace"], ("", ""))
        row = BudgetAlertRow(
            **values, webhook_status=PENDING if hook else "", webhook_format=fmt if hook else ""
        )
        stmt = (
            insert_fn(table)
            .values(row.model_dump(exclude={"id"}))
            .on_conflict_do_nothing(index_elements=list(_UNIQUE))
            .returning(col(BudgetAlertRow.id))
        )
        new_id = s.exec(stmt).scalar()
        if new_id is None:
            continue
        row.id = int(new_id)
        recorded.append(RecordedAlert(row=row, alert=to_pb(row), text=row_text(row), webhook=hook))
    return recorded


def row_text(row: BudgetAlertRow) -> str:
    budget = Budget(row.amount_micros, Period[row.period.upper()])
    return alert_text(
        scope=row.scope,
        name=row.name,
        workspace=row.workspace,
        threshold=row.threshold_percent,
        budget=budget,
        spent_micros=row.spent_micros,
        window=Window(budget.period, row.period_start_ms, row.period_end_ms, row.period_id),
    )


def to_pb(row: BudgetAlertRow) -> tpb.BudgetAlert:
    return tpb.BudgetAlert(
        time_ms=row.time_ms,
        scope=row.scope,
        id=row.scope_id,
        name=row.name,
        workspace=row.workspace,
        threshold_percent=row.threshold_percent,
        budget=pb.Budget(
            amount_micros=row.amount_micros,
            period=pb.Period.ValueType(int(Period[row.period.upper()])),
        ),
        period_start_ms=row.period_start_ms,
        spent_micros=row.spent_micros,
        webhook_status=row.webhook_status,
        webhook_attempts=row.webhook_attempts,
        webhook_last_attempt_ms=row.webhook_last_attempt_ms,
        webhook_next_attempt_ms=row.webhook_next_attempt_ms,
        webhook_format=row.webhook_format,
    )


def record_attempt(s: Session, alert_id: int, report: AttemptReport) -> None:
    """Store one delivery try: its count, when it ended, the status and any next try."""
    row = s.get(BudgetAlertRow, alert_id)
    if row is not None:
        row.webhook_status = report.status
        row.webhook_attempts = max(row.webhook_attempts, report.attempt)
        row.webhook_last_attempt_ms = report.ended_ms
        row.webhook_next_attempt_ms = report.next_attempt_ms
        s.add(row)


def mark_interrupted(s: Session, alert_ids: Iterable[int]) -> None:
    """Deliveries cut short by a shutdown: a final status instead of a "retrying" forever."""
    for alert_id in alert_ids:
        row = s.get(BudgetAlertRow, alert_id)
        if row is not None and (
            row.webhook_status == PENDING or row.webhook_status.startswith(RETRYING)
        ):
            row.webhook_status = INTERRUPTED
            row.webhook_next_attempt_ms = 0
            s.add(row)


def list_alerts(
    s: Session, req: tpb.ListAlertsRequest, scope: frozenset[str] = frozenset()
) -> list[tpb.BudgetAlert]:
    """Newest first; ``workspace`` matches alerts of the workspace and of its keys; ``scope``
    (non-empty) keeps only alerts of those workspaces."""
    if req.since_ms < 0:
        raise InvalidArgument("since_ms must not be negative")
    if req.limit < 0:
        raise InvalidArgument("limit must not be negative (0 means the default, 100)")
    limit = min(req.limit or DEFAULT_LIMIT, MAX_LIMIT)
    stmt = in_workspaces(select(BudgetAlertRow), BudgetAlertRow.workspace, req.workspace, scope)
    if req.since_ms:
        stmt = stmt.where(col(BudgetAlertRow.time_ms) >= req.since_ms)
    stmt = stmt.order_by(col(BudgetAlertRow.time_ms).desc(), col(BudgetAlertRow.id).desc())
    return [to_pb(r) for r in s.exec(stmt.limit(limit)).all()]


def webhook_payload(recorded: RecordedAlert) -> dict[str, Any]:
    """The JSON document POSTed to a workspace's ``alert_webhook``, in the alert's format."""
    row = recorded.row
    return alert_formats.payload(row.webhook_format, row, recorded.text)
