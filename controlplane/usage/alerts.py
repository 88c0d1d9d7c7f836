"""Budget alerts: crossing 50/80/100 % of a budget, recorded once per period, POSTed to a webhook.

Contract:

* :meth:`AlertMonitor.note` is called by ingest with the events it newly stored; it only records
  which keys, workspaces and developers were touched and returns at once. A background task then checks
  those scopes (:func:`detect`, with the same spend computation as the snapshot seeds and
  ``budget_status``) and records every threshold reached in the current period of each budget;
  at most one check starts per ``min_interval_s`` (scopes noted in between are checked together).
  Nothing here can slow down, block or fail an ingest; a failed check is logged and the next
  ingest touching the scope checks again.
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

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from controlplane.catalog.common import in_workspaces
from controlplane.catalog.common import now_ms as _now_ms
from controlplane.domain.budgets import Budget, Period
from controlplane.domain.errors import InvalidArgument
from controlplane.domain.spend import Window, alert_text, thresholds_reached
from controlplane.store.db import Database
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.usage import BudgetAlertRow
from controlplane.usage import alert_formats
from controlplane.usage.spend import IN_CHUNK, current_spend, scopes_for
from controlplane.usage.webhooks import (
    DELIVERED,
    RETRYING,
    AttemptReport,
    new_client,
    post_webhook,
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


class AlertMonitor:
    """Checks the scopes ingest touched and delivers webhooks, all off the ingest path."""

    def __init__(
        self,
        db: Database,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        max_delay_s: float = 60.0,
        allow_internal: bool = False,
        min_interval_s: float = 1.0,
    ) -> None:
        self._db = db
        # Checks start at most this often: under load every data-plane batch (5 a second per
        # plane) would otherwise cost a check of its own; waiting gathers their scopes into one,
        # and an alert is at most this much later.
        self.min_interval_s = min_interval_s
        self.allow_internal = allow_internal  # --allow-internal-webhooks
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_delay_s = max_delay_s
        self._keys: set[str] = set()
        self._workspaces: set[str] = set()
        self._developers: set[str] = set()
        self._checker: asyncio.Task[None] | None = None
        self._last_check = float("-inf")  # the event loop's clock when the last check started
        self._deliveries: dict[asyncio.Task[None], int] = {}  # task → alert id
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
        loop = asyncio.get_running_loop()
        while (self._keys or self._workspaces or self._developers) and not self._closed:
            wait = self._last_check + self.min_interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # a rate limit: scopes noted meanwhile join this check
            self._last_check = loop.time()
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
                self._deliveries[task] = alert.row.id or 0
                task.add_done_callback(lambda done: self._deliveries.pop(done, None))
        return recorded

    async def _deliver(self, alert: RecordedAlert) -> None:
        if self._client is None:
            self._client = new_client()
        alert_id = alert.row.id or 0

        async def note(report: AttemptReport) -> None:  # post_webhook logs a failure here
            await self._db.run(lambda s: record_attempt(s, alert_id, report))

        status = await post_webhook(
            self._client,
            alert.webhook,
            webhook_payload(alert),
            timeout_s=self.timeout_s,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            max_delay_s=self.max_delay_s,
            allow_internal=self.allow_internal,
            label=f"alert {alert_id} (workspace {alert.row.workspace}): webhook",
            on_attempt=note,
        )
        if status != DELIVERED:
            log.warning("alert %d: webhook %s", alert_id, status)

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
        """Stop checking and delivering; deliveries still under way end :data:`INTERRUPTED`."""
        self._closed = True
        interrupted = [aid for task, aid in self._deliveries.items() if not task.done()]
        tasks = [t for t in (self._checker, *self._deliveries) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if interrupted:
            try:
                await self._db.run(lambda s: mark_interrupted(s, interrupted))
            except Exception:
                log.exception("could not mark %d interrupted alert deliveries", len(interrupted))
        if self._client is not None:
            await self._client.aclose()
            self._client = None
