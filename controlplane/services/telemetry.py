"""The Telemetry service: usage ingest from data planes, usage queries, the live log tail, live
stats (:mod:`controlplane.usage.stats`, fed at ingest) and budget alerts.

After an ingest stores new events, a throttled spend refresh of the touched scopes is
*requested*, not awaited (:meth:`~controlplane.snapshots.cache.SnapshotCache.rebuild_soon`,
never a configuration rebuild): data planes get fresh spend seeds, and the leader's budget alerts
(:class:`~controlplane.usage.alert_monitor.AlertMonitor`) are checked against the same spend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlmodel import Session

from controlplane.catalog.common import now_ms
from controlplane.domain.errors import InvalidArgument
from controlplane.errors import grpc_errors
from controlplane.fanout import Tail
from controlplane.identity import principal
from controlplane.services.state import AppState
from controlplane.snapshots.spend_seeds import spend_scopes
from controlplane.usage.activity import (
    BATCH_RETENTION_MS,
    add_activity,
    ingest_activity,
    purge_batches,
)
from controlplane.usage.alerts import list_alerts
from controlplane.usage.ingest import ingest
from controlplane.usage.ledger import query_usage, recent_events
from controlplane.usage.request_logs import get_log
from controlplane.usage.stats import GROUPINGS, MAX_WINDOW_S, clamp_window
from gwapi.v1 import telemetry_pb2 as tpb
from gwapi.v1 import telemetry_pb2_grpc

log = logging.getLogger(__name__)
Ctx = Any  # grpc.aio.ServicerContext


def _matches(ev: tpb.UsageEvent, req: tpb.TailLogsRequest, scope: frozenset[str]) -> bool:
    return (
        (not scope or ev.workspace in scope)
        and (not req.workspace or ev.workspace == req.workspace)
        and (not req.key_id or ev.key_id == req.key_id)
        and (not req.session_id or ev.session_id == req.session_id)
        and (not req.developer_id or ev.developer_id == req.developer_id)
    )


def with_activity(
    s: Session, rows: list[tpb.UsageRow], request: tpb.QueryUsageRequest, scope: frozenset[str]
) -> list[tpb.UsageRow]:
    """Rows grouped by developer also carry what each developer's Claude Code reported."""
    if request.group_by != "developer":
        return rows
    return add_activity(s, rows, request, scope)


@grpc_errors
class TelemetryService(telemetry_pb2_grpc.TelemetryServicer):
    def __init__(
        self,
        state: AppState,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._s = state
        self._sleep = sleep  # StreamStats' pacing (tests inject one; the clock is the stats')
        self._purged_at_ms = 0  # ReportActivity forgets old batch ids at most hourly

    async def ReportUsage(
        self, request: tpb.ReportUsageRequest, context: Ctx
    ) -> tpb.ReportUsageResponse:
        response = await ingest(self._s.db, self._s.hub, request, after=(self._after_ingest,))
        self._s.metrics.ingested(request, response)
        return response

    def _after_ingest(self, fresh: list[tpb.UsageEvent]) -> None:
        self._s.stats.add(fresh)
        if self._s.fleet is not None:  # after a bus interruption, these are not caught up again
            self._s.fleet.usage.remember(fresh)
        # Seeds for the data planes; on the leader, the budget alerts (fed by the same refresh).
        self._s.cache.rebuild_soon(spend_scopes(fresh))

    async def ReportActivity(
        self, request: tpb.ReportActivityRequest, context: Ctx
    ) -> tpb.ReportActivityResponse:
        """Developers' self-reported activity (:mod:`controlplane.usage.activity`)."""
        now = now_ms()
        purge = now - self._purged_at_ms >= 3_600_000
        if purge:
            self._purged_at_ms = now

        def store(s: Session) -> tpb.ReportActivityResponse:
            if purge:
                purge_batches(s, now - BATCH_RETENTION_MS)
            return ingest_activity(s, request)

        response = await self._s.db.run(store)
        log.debug(
            "activity batch %s from %s: %d rows%s",
            request.batch_id,
            request.node_id or "?",
            len(request.activity),
            " (duplicate)" if response.duplicate else "",
        )
        return response

    async def ListAlerts(
        self, request: tpb.ListAlertsRequest, context: Ctx
    ) -> tpb.ListAlertsResponse:
        scope = principal().workspaces
        alerts = await self._s.db.read(lambda s: list_alerts(s, request, scope))
        return tpb.ListAlertsResponse(alerts=alerts)

    async def GetLog(self, request: tpb.GetLogRequest, context: Ctx) -> tpb.UsageEvent:
        return await self._s.db.read(lambda s: get_log(s, request.request_id))

    async def QueryUsage(
        self, request: tpb.QueryUsageRequest, context: Ctx
    ) -> tpb.QueryUsageResponse:
        scope = principal().workspaces
        rows = await self._s.db.read(
            lambda s: with_activity(s, query_usage(s, request, scope), request, scope)
        )
        return tpb.QueryUsageResponse(rows=rows)

    async def TailLogs(
        self, request: tpb.TailLogsRequest, context: Ctx
    ) -> AsyncIterator[tpb.UsageEvent]:
        """The last ``limit`` events (oldest first); with ``follow``, then every new one.

        With follow, the live subscription starts *before* the history is read, so an event
        ingested in between is neither lost nor sent twice.
        """
        scope = principal().workspaces

        def wanted(ev: tpb.UsageEvent) -> bool:
            return _matches(ev, request, scope)

        with Tail(self._s.hub, request.follow, _request_id, wanted, "log tail") as tail:
            history = await self._s.db.read(
                lambda s: recent_events(
                    s,
                    request.limit,
                    request.workspace,
                    request.key_id,
                    request.session_id,
                    scope,
                    request.developer_id,
                )
            )
            tail.seed(history)
            async for ev in tail:
                yield ev

    async def StreamStats(
        self, request: tpb.StreamStatsRequest, context: Ctx
    ) -> AsyncIterator[tpb.StatsFrame]:
        """A frame now, then one at every following second boundary, until the client leaves
        (or the server shuts down)."""
        if request.group_by not in GROUPINGS:
            raise InvalidArgument(f"group_by must be one of: {', '.join(GROUPINGS)}")
        if request.window_s < 0 or request.window_s > MAX_WINDOW_S:
            raise InvalidArgument(f"window_s must be between 1 and {MAX_WINDOW_S} (0 = 60)")
        window_s = clamp_window(request.window_s)
        stats = self._s.stats
        scope = principal().workspaces
        while not self._s.hub.closed:
            now = stats.now_ms()
            yield stats.frame(
                request.group_by, window_s, request.workspace, now_ms=now, scope=scope
            )
            await self._sleep((1000 - now % 1000) / 1000)


def _request_id(ev: tpb.UsageEvent) -> str:
    return ev.request_id
