"""The admin client's calls that watch the gateway: data planes, usage, budget alerts, request
logs, the audit log and live stats. The ``tail_*`` and ``stream_*`` calls are server streams,
opened at the first iteration and cancelled when it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from gwapi.v1 import admin_pb2, discovery_pb2, telemetry_pb2
from gwclient.channel import Channel

__all__ = ["ObservabilityCalls"]


class ObservabilityCalls(Channel):
    async def list_dataplanes(self) -> discovery_pb2.ListDataPlanesResponse:
        request = discovery_pb2.ListDataPlanesRequest()
        return await self._unary("ListDataPlanes", self._discovery.ListDataPlanes, request)

    async def query_usage(
        self,
        *,
        workspace: str = "",
        key_id: str = "",
        group_by: str = "",
        since_ms: int = 0,
        until_ms: int = 0,
        developer_id: str = "",
    ) -> Sequence[telemetry_pb2.UsageRow]:
        """Rows grouped by ``group_by`` (``""`` = one total row) over ``[since_ms, until_ms)``."""
        request = telemetry_pb2.QueryUsageRequest(
            workspace=workspace,
            key_id=key_id,
            group_by=group_by,
            since_ms=since_ms,
            until_ms=until_ms,
            developer_id=developer_id,
        )
        response: telemetry_pb2.QueryUsageResponse = await self._unary(
            "QueryUsage", self._telemetry.QueryUsage, request
        )
        return list(response.rows)

    async def list_alerts(
        self, *, workspace: str = "", since_ms: int = 0, limit: int = 0
    ) -> list[telemetry_pb2.BudgetAlert]:
        """Budget alerts (50/80/100 % crossed), newest first; ``limit`` 0 = the server's 100."""
        request = telemetry_pb2.ListAlertsRequest(
            workspace=workspace, since_ms=since_ms, limit=limit
        )
        response: telemetry_pb2.ListAlertsResponse = await self._unary(
            "ListAlerts", self._telemetry.ListAlerts, request
        )
        return list(response.alerts)

    async def get_log(self, request_id: str) -> telemetry_pb2.UsageEvent:
        """One request's full record, with its logged headers and bodies (admin token)."""
        return await self._unary(
            "GetLog",
            self._telemetry.GetLog,
            telemetry_pb2.GetLogRequest(request_id=request_id),
        )

    def tail_logs(
        self,
        *,
        follow: bool = False,
        limit: int = 20,
        workspace: str = "",
        key_id: str = "",
        session_id: str = "",
        developer_id: str = "",
    ) -> AsyncIterator[telemetry_pb2.UsageEvent]:
        """The last ``limit`` events, oldest first; with ``follow`` then new ones until cancelled.

        Without ``follow`` the whole call is bounded by the client timeout; with it, only the
        connection is (a quiet gateway may send nothing for hours).
        """
        request = telemetry_pb2.TailLogsRequest(
            follow=follow,
            limit=limit,
            workspace=workspace,
            key_id=key_id,
            session_id=session_id,
            developer_id=developer_id,
        )
        return self._stream("TailLogs", self._telemetry.TailLogs, request, bounded=not follow)

    async def list_audit(
        self, *, workspace: str = "", since_ms: int = 0, limit: int = 0, resource_kind: str = ""
    ) -> list[admin_pb2.AuditEvent]:
        """Admin changes, newest first; ``limit`` 0 = the server's 100."""
        request = admin_pb2.ListAuditRequest(
            workspace=workspace, since_ms=since_ms, limit=limit, resource_kind=resource_kind
        )
        response: admin_pb2.ListAuditResponse = await self._unary(
            "ListAudit", self._admin.ListAudit, request
        )
        return list(response.events)

    def tail_audit(
        self, *, follow: bool = False, limit: int = 20, workspace: str = ""
    ) -> AsyncIterator[admin_pb2.AuditEvent]:
        """The last ``limit`` admin changes, oldest first; with ``follow`` then each new one as
        it commits, until cancelled (only the connection is bounded by the timeout then)."""
        request = admin_pb2.TailAuditRequest(follow=follow, limit=limit, workspace=workspace)
        return self._stream("TailAudit", self._admin.TailAudit, request, bounded=not follow)

    def stream_stats(
        self, group_by: str, window_s: int = 60, workspace: str = ""
    ) -> AsyncIterator[telemetry_pb2.StatsFrame]:
        """Live stats per ``group_by`` (workspace | key | developer | provider): a frame a
        second until cancelled. An older control plane raises ClientError(UNIMPLEMENTED)."""
        request = telemetry_pb2.StreamStatsRequest(
            group_by=group_by, window_s=window_s, workspace=workspace
        )
        return self._stream("StreamStats", self._telemetry.StreamStats, request, bounded=False)
