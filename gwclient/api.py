"""What the admin client's users need from it, as protocols: :class:`ConsoleAPI` (the console's
reads, revoke and disable) and :class:`AdminAPI` (that and the calls gwctl's tests exercise).

:class:`gwclient.client.GatewayClient` satisfies both (mypy checks it there); the tests' one
fake, ``tests/fakes/admin_client.py``, satisfies :class:`AdminAPI` (mypy checks it there), so
the fake cannot drift from the real client's signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Protocol, Self

from gwapi.v1 import admin_pb2, common_pb2, discovery_pb2, telemetry_pb2


class ConsoleAPI(Protocol):
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


class AdminAPI(ConsoleAPI, Protocol):
    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def create_workspace(self, workspace: common_pb2.Workspace) -> common_pb2.Workspace: ...

    async def get_workspace(self, name: str) -> common_pb2.Workspace: ...

    async def update_workspace(
        self, workspace: common_pb2.Workspace, paths: Iterable[str]
    ) -> common_pb2.Workspace: ...

    async def create_key(
        self, request: admin_pb2.CreateKeyRequest
    ) -> admin_pb2.CreateKeyResponse: ...

    async def create_keys(
        self, workspace: str, requests: list[admin_pb2.CreateKeyRequest]
    ) -> admin_pb2.CreateKeysResponse: ...

    async def get_key(self, key_id: str) -> common_pb2.VirtualKey: ...

    async def update_key(
        self, key: common_pb2.VirtualKey, paths: Iterable[str]
    ) -> common_pb2.VirtualKey: ...

    async def create_provider(
        self, provider: common_pb2.Provider, api_key: str = ""
    ) -> common_pb2.Provider: ...

    async def create_route(self, route: common_pb2.Route) -> common_pb2.Route: ...

    async def validate(
        self,
        providers: Iterable[common_pb2.Provider] = (),
        routes: Iterable[common_pb2.Route] = (),
        workspaces: Iterable[common_pb2.Workspace] = (),
    ) -> list[admin_pb2.ValidationResult]: ...

    async def list_alerts(
        self, *, workspace: str = "", since_ms: int = 0, limit: int = 0
    ) -> list[telemetry_pb2.BudgetAlert]: ...
