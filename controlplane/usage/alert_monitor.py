"""The leader's budget-alert recorder: thresholds from the spend refresh, recorded off the ingest
path, webhooks delivered in the background (the contract: :mod:`controlplane.usage.alerts`,
whose functions this calls through the module, so tests can stand in for them)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import httpx

from controlplane.catalog.common import now_ms as _now_ms
from controlplane.store.db import Database
from controlplane.usage import alerts
from controlplane.usage.alerts import (
    RecordedAlert,
    identity,
    mark_interrupted,
    record_attempt,
    webhook_payload,
)
from controlplane.usage.spend import BudgetSpend
from controlplane.usage.webhooks import DELIVERED, AttemptReport, new_client, post_webhook

log = logging.getLogger(__name__)
KIND_ORDER = {"workspace": 0, "key": 1, "developer": 2}  # recorded in this order, as detect's
KNOWN_MAX = 200_000  # alert identities remembered as recorded (then the expired ones go)


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
        for found in alerts.candidates(spends, now_ms):
            key = identity(found)
            if key not in self._known:
                self._pending[key] = found
        if self._pending and (self._recorder is None or self._recorder.done()):
            self._recorder = asyncio.get_running_loop().create_task(
                self._record_pending(), name="budget-alerts"
            )

    async def _record_pending(self) -> None:
        while self._pending and not self._closed:
            batch, self._pending = list(self._pending.values()), {}
            batch.sort(key=lambda c: KIND_ORDER.get(c["scope"], 3))
            try:
                fresh = await self._db.read(functools.partial(alerts.unrecorded, found=batch))
                if fresh:
                    await self._record(fresh)
            except Exception:
                log.exception("budget alert check failed; the next spend refresh checks again")
                return
            # Recorded now, by a concurrent twin, or earlier: in the table either way.
            self._remember(batch)

    def _remember(self, found: Iterable[dict[str, Any]]) -> None:
        for c in found:
            self._known[identity(c)] = int(c["period_end_ms"])
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
        found = await self._db.read(lambda s: alerts.detect(s, keys, names, now, devs))
        return await self._record(found) if found else []

    async def _record(self, found: list[dict[str, Any]]) -> list[RecordedAlert]:
        recorded = await self._db.run(lambda s: alerts.record(s, found))
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
