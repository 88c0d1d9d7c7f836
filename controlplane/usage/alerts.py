"""Budget alerts: crossing 50/80/100 % of a budget, recorded once per period, POSTed to a webhook.

Contract:

* :meth:`AlertMonitor.note` is called by ingest with the events it newly stored; it only records
  which keys, workspaces and developers were touched and returns at once. A background task then checks
  those scopes (:func:`detect`, with the same spend computation as the snapshot seeds and
  ``budget_status``) and records every threshold reached in the current period of each budget.
  Nothing here can slow down, block or fail an ingest; a failed check is logged and the next
  ingest touching the scope checks again.
* Once: ``budget_alert`` has a unique constraint on (scope, id, period, period_start_ms,
  threshold) and rows are inserted with ``ON CONFLICT DO NOTHING … RETURNING``, so concurrent
  ingests, replayed batches, several control planes on one PostgreSQL and restarts record each
  alert exactly once, and only the process whose insert won delivers its webhook.
* Webhook: when the workspace has ``alert_webhook``, the alert is POSTed as JSON (see
  :func:`webhook_payload`; its ``text`` makes it readable in a Slack-style incoming webhook) in
  a background task by :func:`controlplane.usage.webhooks.post_webhook`: ``timeout_s`` per
  attempt, ``attempts`` tries with exponential backoff on connection errors, timeouts, 408, 429
  and 5xx; redirects are not followed; internal destinations are refused unless
  ``allow_internal``. The row's ``webhook_status`` goes ``pending`` → ``delivered`` |
  ``failed: <coarse reason>`` | ``refused: …`` (``""`` when no webhook is configured), never a
  response or error detail. A delivery interrupted by a shutdown stays ``pending``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from controlplane.catalog.common import now_ms as _now_ms
from controlplane.domain.budgets import Budget, Period, format_budget
from controlplane.domain.errors import InvalidArgument
from controlplane.domain.spend import Window, alert_text, format_ms, thresholds_reached
from controlplane.store.db import Database
from controlplane.store.models import BudgetAlertRow, WorkspaceRow
from controlplane.usage.spend import IN_CHUNK, current_spend, scopes_for
from controlplane.usage.webhooks import DELIVERED, new_client, post_webhook
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PENDING = "pending"
_UNIQUE = ("scope", "scope_id", "period", "period_start_ms", "threshold_percent")


@dataclass(frozen=True)
class RecordedAlert:
    """A newly recorded alert and where to deliver it (``webhook`` ``""`` = nowhere)."""

    row: BudgetAlertRow
    alert: tpb.BudgetAlert
    text: str
    webhook: str


def _identity(values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[name] for name in _UNIQUE)


def detect(
    s: Session,
    key_ids: Iterable[str],
    workspaces: Iterable[str],
    now_ms: int,
    developer_ids: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Row values of the alerts due for these scopes and not recorded yet (read only)."""
    candidates: list[dict[str, Any]] = []
    scopes = scopes_for(s, key_ids=key_ids, workspaces=workspaces, developer_ids=developer_ids)
    for spend in current_spend(s, scopes, now_ms):
        scope, budget, window = spend.scope, spend.budget, spend.window
        for threshold in thresholds_reached(spend.spent_micros, budget.amount_micros):
            candidates.append(
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
    if not candidates:
        return []
    ids = sorted({c["scope_id"] for c in candidates})
    known: set[tuple[Any, ...]] = set()
    for start in range(0, len(ids), IN_CHUNK):
        stmt = select(*(getattr(BudgetAlertRow, name) for name in _UNIQUE)).where(
            col(BudgetAlertRow.scope_id).in_(ids[start : start + IN_CHUNK]),
            col(BudgetAlertRow.period_start_ms).in_(
                sorted({c["period_start_ms"] for c in candidates})
            ),
        )
        known.update(tuple(row) for row in s.exec(stmt).all())
    return [c for c in candidates if _identity(c) not in known]


def record(s: Session, candidates: list[dict[str, Any]]) -> list[RecordedAlert]:
    """Insert the candidates; returns those this call inserted (a concurrent twin loses)."""
    names = sorted({c["workspace"] for c in candidates})
    hooks: dict[str, str] = dict(
        s.exec(
            select(WorkspaceRow.name, WorkspaceRow.alert_webhook).where(
                col(WorkspaceRow.name).in_(names)
            )
        ).all()
    )
    dialect = s.get_bind().dialect.name
    insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = BudgetAlertRow.__table__  # type: ignore[attr-defined]
    recorded: list[RecordedAlert] = []
    for values in candidates:
        hook = hooks.get(values["workspace"], "")
        row = BudgetAlertRow(**values, webhook_status=PENDING if hook else "")
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
    )


def set_webhook_status(s: Session, alert_id: int, status: str) -> None:
    row = s.get(BudgetAlertRow, alert_id)
    if row is not None:
        row.webhook_status = status
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
    stmt = select(BudgetAlertRow)
    if scope:
        stmt = stmt.where(col(BudgetAlertRow.workspace).in_(sorted(scope)))
    if req.workspace:
        stmt = stmt.where(col(BudgetAlertRow.workspace) == req.workspace)
    if req.since_ms:
        stmt = stmt.where(col(BudgetAlertRow.time_ms) >= req.since_ms)
    stmt = stmt.order_by(col(BudgetAlertRow.time_ms).desc(), col(BudgetAlertRow.id).desc())
    return [to_pb(r) for r in s.exec(stmt.limit(limit)).all()]


def webhook_payload(recorded: RecordedAlert) -> dict[str, Any]:
    """The JSON document POSTed to a workspace's ``alert_webhook``."""
    row = recorded.row
    budget = Budget(row.amount_micros, Period[row.period.upper()])
    return {
        "type": "budget_alert",
        "text": recorded.text,
        "alert_id": row.id,
        "time": format_ms(row.time_ms),
        "time_ms": row.time_ms,
        "scope": row.scope,
        "id": row.scope_id,
        "name": row.name,
        "workspace": row.workspace,
        "threshold_percent": row.threshold_percent,
        "budget": format_budget(budget),
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


class AlertMonitor:
    """Checks the scopes ingest touched and delivers webhooks, all off the ingest path."""

    def __init__(
        self,
        db: Database,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        allow_internal: bool = False,
    ) -> None:
        self._db = db
        self.allow_internal = allow_internal  # --allow-internal-webhooks
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._keys: set[str] = set()
        self._workspaces: set[str] = set()
        self._developers: set[str] = set()
        self._checker: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def note(self, events: Iterable[tpb.UsageEvent]) -> None:
        """Remember the scopes of newly stored events and start a check; never raises."""
        if self._closed:
            return
        for ev in events:
            if ev.key_id:
                self._keys.add(ev.key_id)
            if ev.workspace:
                self._workspaces.add(ev.workspace)
            if ev.developer_id:
                self._developers.add(ev.developer_id)
        pending = self._keys or self._workspaces or self._developers
        if pending and (self._checker is None or self._checker.done()):
            self._checker = asyncio.get_running_loop().create_task(
                self._check_pending(), name="budget-alerts"
            )

    async def _check_pending(self) -> None:
        while (self._keys or self._workspaces or self._developers) and not self._closed:
            keys, self._keys = self._keys, set()
            workspaces, self._workspaces = self._workspaces, set()
            developers, self._developers = self._developers, set()
            try:
                await self.check(keys, workspaces, developer_ids=developers)
            except Exception:
                log.exception("budget alert check failed; the next ingest checks again")

    async def check(
        self,
        key_ids: Iterable[str],
        workspaces: Iterable[str],
        now_ms: int | None = None,
        developer_ids: Iterable[str] = (),
    ) -> list[RecordedAlert]:
        """Record the alerts due for these scopes; schedule their webhooks; return them."""
        now = now_ms if now_ms is not None else _now_ms()
        keys, names, devs = list(key_ids), list(workspaces), list(developer_ids)
        candidates = await self._db.read(lambda s: detect(s, keys, names, now, devs))
        if not candidates:
            return []
        recorded = await self._db.run(lambda s: record(s, candidates))
        for alert in recorded:
            log.warning("budget alert: %s", alert.text)
            if alert.webhook and not self._closed:
                task = asyncio.get_running_loop().create_task(
                    self._deliver(alert), name=f"alert-webhook-{alert.row.id}"
                )
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
        return recorded

    async def _deliver(self, alert: RecordedAlert) -> None:
        if self._client is None:
            self._client = new_client()
        status = await post_webhook(
            self._client,
            alert.webhook,
            webhook_payload(alert),
            timeout_s=self.timeout_s,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            allow_internal=self.allow_internal,
            label=f"alert {alert.row.id} (workspace {alert.row.workspace}): webhook",
        )
        if status != DELIVERED:
            log.warning("alert %d: webhook %s", alert.row.id, status)
        alert_id = alert.row.id or 0
        try:
            await self._db.run(lambda s: set_webhook_status(s, alert_id, status))
        except Exception:
            log.exception("alert %d: could not store webhook status %r", alert_id, status)

    async def idle(self) -> None:
        """Wait until pending checks and webhook deliveries are done (tests, shutdown)."""
        while True:
            tasks = [
                t for t in (self._checker, *self._deliveries) if t is not None and not t.done()
            ]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop checking and delivering (in-flight deliveries stay ``pending``)."""
        self._closed = True
        tasks = [t for t in (self._checker, *self._deliveries) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
