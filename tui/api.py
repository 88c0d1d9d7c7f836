"""What the TUI needs from a control plane: the read, revoke and disable methods of
:class:`tui.client.GatewayClient`. Tests pass a fake object with the same methods."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from gwapi.v1 import admin_pb2, common_pb2, discovery_pb2, telemetry_pb2


class GatewayLike(Protocol):
    target: str

    async def list_workspaces(self) -> list[common_pb2.Workspace]: ...

    async def list_keys(
        self, workspace: str = "", include_revoked: bool = False
    ) -> list[common_pb2.VirtualKey]: ...

    async def revoke_key(self, key_id: str) -> common_pb2.VirtualKey: ...

    async def list_developers(
        self, workspace: str = "", include_disabled: bool = False
    ) -> list[common_pb2.Developer]: ...

    async def disable_developer(self, id_or_email: str) -> common_pb2.Developer: ...

    async def list_providers(self) -> list[common_pb2.Provider]: ...

    async def list_dataplanes(self) -> discovery_pb2.ListDataPlanesResponse: ...

    async def query_usage(
        self,
        *,
        workspace: str = "",
        key_id: str = "",
        group_by: str = "",
        since_ms: int = 0,
        until_ms: int = 0,
    ) -> Sequence[telemetry_pb2.UsageRow]: ...

    def tail_logs(
        self,
        *,
        follow: bool = False,
        limit: int = 20,
        workspace: str = "",
        key_id: str = "",
    ) -> AsyncIterator[telemetry_pb2.UsageEvent]: ...

    def stream_stats(
        self, group_by: str, window_s: int = 60, workspace: str = ""
    ) -> AsyncIterator[telemetry_pb2.StatsFrame]: ...

    async def get_log(self, request_id: str) -> telemetry_pb2.UsageEvent: ...

    def tail_audit(
        self, *, follow: bool = False, limit: int = 20, workspace: str = ""
    ) -> AsyncIterator[admin_pb2.AuditEvent]: ...
