"""Budget alerts: crossing 50/80/100 % of a budget, recorded once per period, POSTed to a webhook.

Contract:

* Detection reads no spend of its own. The snapshot cache's spend refresh
  (:mod:`controlplane.snapshots.spend_seeds`), which ingest requests for the scopes it touched
  and the periodic sweep for every scope, computes each dirty scope's budgets and spend with
  :func:`controlplane.usage.spend.current_spend` for the data planes' seeds; on the leader the
  same values are handed to :meth:`AlertMonitor.observe`, so an alert and the seed the data
  planes enforce are one computation. ``observe`` returns at once: it keeps the thresholds
  reached (:func:`candidates`) that this monitor has not seen recorded, and a background task
  records them (:func:`unrecorded`, then :func:`record`). Nothing here can slow down, block or
  fail an ingest; a failed recording is logged and the next refresh of the scope tries again.
  Only scopes the data planes serve are checked: a revoked key or a disabled developer spends
  nothing more.
* :meth:`AlertMonitor.check` (and :func:`detect`) does the whole detection from the database for
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

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
from controlplane.usage.spend import IN_CHUNK, BudgetSpend, current_spend, scopes_for
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
_KIND_ORDER = {"workspace": 0, "key": 1, "developer": 2}  # recorded in this order, as detect's
KNOWN_MAX = 200_000  # alert identities remembered as recorded (then the expired ones go)


@dataclass(frozen=True)
class RecordedAlert:
    """A newly recorded alert and where to deliver it (``webhook`` ``""`` = nowhere)."""

    row: BudgetAlertRow
    alert: tpb.BudgetAlert
    text: str
    webhook: str


def _identity(values: dict[str, Any]) -> tuple[Any, ...]:
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
    return [c for c in found if _identity(c) not in known]


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


class AlertMonitor:
    """Records the alerts the spend refresh finds and delivers webhooks, all off the ingest
    path. ``feeder_idle`` (the snapshot cache's ``drain``) lets :meth:`idle` wait for the
    refresh that feeds :meth:`observe`."""

    def __init__(
        self,
        db: Database,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        max_delay_s: float = 60.0,
        allow_internal: bool = False,
    ) -> None:
        self._db = db
        self.allow_internal = allow_internal  # --allow-internal-webhooks
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_delay_s = max_delay_s
        self.feeder_idle: Callable[[], Awaitable[None]] | None = None
        # Candidates waiting to be recorded, by identity (a later observation replaces an
        # earlier one: its spend is newer).
        self._pending: dict[tuple[Any, ...], dict[str, Any]] = {}
        # Identities known to be in budget_alert, with their period's end: a budget past 50 %
        # stays a candidate at every refresh until its period ends, and must not cost a query
        # each time.
        self._known: dict[tuple[Any, ...], int] = {}
        self._recorder: asyncio.Task[None] | None = None
        self._deliveries: dict[asyncio.Task[None], int] = {}  # task → alert id
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def observe(self, spends: Sequence[BudgetSpend], now_ms: int) -> None:
        """Budgets and their current spend, as the spend refresh computed them: start recording
        the thresholds reached that are not known to be recorded; never raises, never waits."""
        if self._closed:
            return
        for found in candidates(spends, now_ms):
            key = _identity(found)
            if key not in self._known:
                self._pending[key] = found
        if self._pending and (self._recorder is None or self._recorder.done()):
            self._recorder = asyncio.get_running_loop().create_task(
                self._record_pending(), name="budget-alerts"
            )

    async def _record_pending(self) -> None:
        while self._pending and not self._closed:
            batch, self._pending = list(self._pending.values()), {}
            batch.sort(key=lambda c: _KIND_ORDER.get(c["scope"], 3))
            try:
                fresh = await self._db.read(functools.partial(unrecorded, found=batch))
                if fresh:
                    await self._record(fresh)
            except Exception:
                log.exception("budget alert check failed; the next spend refresh checks again")
                return
            # Recorded now, by a concurrent twin, or earlier: in the table either way.
            self._remember(batch)

    def _remember(self, found: Iterable[dict[str, Any]]) -> None:
        for c in found:
            self._known[_identity(c)] = int(c["period_end_ms"])
        if len(self._known) > KNOWN_MAX:
            now = _now_ms()
            self._known = {k: end for k, end in self._known.items() if end > now}
            if len(self._known) > KNOWN_MAX:  # still too many: forget, at worst a query more
                self._known.clear()

    async def check(
        self,
        key_ids: Iterable[str],
        workspaces: Iterable[str],
        now_ms: int | None = None,
        developer_ids: Iterable[str] = (),
    ) -> list[RecordedAlert]:
        """Detect from the database and record the alerts due for these scopes; schedule their
        webhooks; return those this call recorded."""
        now = now_ms if now_ms is not None else _now_ms()
        keys, names, devs = list(key_ids), list(workspaces), list(developer_ids)
        found = await self._db.read(lambda s: detect(s, keys, names, now, devs))
        return await self._record(found) if found else []

    async def _record(self, found: list[dict[str, Any]]) -> list[RecordedAlert]:
        recorded = await self._db.run(lambda s: record(s, found))
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
        if self.feeder_idle is not None:
            await self.feeder_idle()
        while True:
            tasks = [
                t for t in (self._recorder, *self._deliveries) if t is not None and not t.done()
            ]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop checking and delivering; deliveries still under way end :data:`INTERRUPTED`."""
        self._closed = True
        interrupted = [aid for task, aid in self._deliveries.items() if not task.done()]
        tasks = [t for t in (self._recorder, *self._deliveries) if t is not None and not t.done()]
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
