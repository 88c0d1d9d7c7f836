"""Async gRPC facade over the control plane's Admin, Discovery and Telemetry services.

Shared by ``gwctl`` and the Textual TUI; it imports neither Textual nor any server package.

Contract:

* ``GatewayClient(target, token)`` opens a lazy ``grpc.aio`` channel to ``HOST:PORT``. Every call
  carries ``authorization: Bearer <token>`` (nothing when the token is empty, so the server's own
  "missing token" refusal reaches the user).
* Methods take plain values or protobuf messages and return protobuf messages.
* Every RPC failure is raised as :class:`ClientError` whose ``message`` is readable as is: the
  server's own explanation, or a sentence about the connection when the server was not reached.
  ``grpc.aio.AioRpcError`` never escapes this module.
* The token never appears in an error message or a ``repr``.
* ``tls_ca`` (a PEM CA file) or ``credentials`` switch the channel to TLS; a failed handshake or
  a plaintext client talking to a TLS server gets a message saying so (:mod:`gwcommon.tls`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gwapi.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    discovery_pb2,
    discovery_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)
from gwcommon.tls import describe_failure, read_ca

__all__ = ["DEFAULT_TARGET", "ClientError", "GatewayClient", "translate_error"]

DEFAULT_TARGET = "127.0.0.1:50051"
_T = TypeVar("_T")

# Substrings gRPC core puts in UNAVAILABLE details when no server answered at all. A server may also
# answer UNAVAILABLE on purpose (e.g. "database is down"); then its own words are kept.
_TRANSPORT_MARKERS = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "dns resolution failed",
    "socket closed",
    "connection reset",
    "no route to host",
    "name resolution",
    "empty address list",
    "ssl handshake",
)


class ClientError(Exception):
    """A refused or failed call: ``code`` is the gRPC status, ``message`` is for humans."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ClientError({self.code.name}, {self.message!r})"


def translate_error(
    exc: aio.AioRpcError, target: str, method: str = "", *, tls: bool | None = None
) -> ClientError:
    """Turn an ``AioRpcError`` into a :class:`ClientError` with a readable message. ``tls``
    (whether the channel uses TLS; ``None``: unknown) adds advice to connection failures."""
    code = exc.code()
    details = (exc.details() or "").strip()
    lowered = details.lower()
    if code == grpc.StatusCode.UNAVAILABLE and (
        not details or any(m in lowered for m in (*_TRANSPORT_MARKERS, "tls handshake"))
    ):
        advice = describe_failure(details, tls) if tls is not None else ""
        if tls and advice:
            message = f"cannot connect to the control plane at {target}: {advice}"
        else:
            message = (
                f"cannot reach the control plane at {target}: is it running? "
                "(gwctl controlplane serve)"
            )
            if advice:
                message += f"; {advice}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the control plane at {target} did not answer in time"
        if details and details.lower() != "deadline exceeded":
            message += f" ({details})"
    elif code == grpc.StatusCode.UNIMPLEMENTED and (
        not details or "method not found" in lowered or "method not implemented" in lowered
    ):
        what = f" {method}" if method else " this call"
        message = f"the control plane at {target} does not implement{what}: is it an older version?"
    elif code == grpc.StatusCode.UNAUTHENTICATED and not details:
        message = "the control plane refused the request: missing or wrong admin token"
    elif details:
        message = details
    else:
        message = f"the control plane answered {code.name}"
    return ClientError(code, message)


class GatewayClient:
    """One channel to one control plane; use as ``async with GatewayClient(...) as client``."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str = "",
        *,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        tls_ca: str = "",
    ) -> None:
        """``credentials`` or ``tls_ca`` (PEM CA file; ``ValueError`` if unreadable) switch to
        TLS; ``timeout`` bounds each unary call (seconds)."""
        ca = read_ca(tls_ca) if credentials is None else None
        if ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        self.target = target
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        # No client keepalive: servers reject pings more frequent than their (5 min) minimum.
        self._tls = credentials is not None
        if credentials is None:
            self._channel = aio.insecure_channel(target)
        else:
            self._channel = aio.secure_channel(target, credentials)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)
        self._discovery = discovery_pb2_grpc.DiscoveryStub(self._channel)
        self._telemetry = telemetry_pb2_grpc.TelemetryStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __repr__(self) -> str:
        return f"GatewayClient({self.target!r})"

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _unary(self, name: str, method: Callable[..., Awaitable[_T]], request: Any) -> _T:
        try:
            return await method(request, metadata=self._metadata, timeout=self.timeout)
        except aio.AioRpcError as exc:
            raise translate_error(exc, self.target, name, tls=self._tls) from None

    # ---- health ---------------------------------------------------------------------------

    async def health(self, service: str = "", wait_s: float = 2.0) -> str:
        """The standard gRPC health status name (``SERVING``…); ``UNIMPLEMENTED`` when the server
        has no health service but answered (which still proves it is up)."""
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            response = await self._health.Check(request, timeout=wait_s)
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return "UNIMPLEMENTED"
            raise translate_error(exc, self.target, "Health.Check", tls=self._tls) from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    # ---- workspaces -----------------------------------------------------------------------

    async def create_workspace(self, workspace: common_pb2.Workspace) -> common_pb2.Workspace:
        request = admin_pb2.CreateWorkspaceRequest(workspace=workspace)
        return await self._unary("CreateWorkspace", self._admin.CreateWorkspace, request)

    async def get_workspace(self, name: str) -> common_pb2.Workspace:
        request = admin_pb2.GetWorkspaceRequest(name=name)
        return await self._unary("GetWorkspace", self._admin.GetWorkspace, request)

    async def list_workspaces(self) -> list[common_pb2.Workspace]:
        request = admin_pb2.ListWorkspacesRequest()
        response: admin_pb2.ListWorkspacesResponse = await self._unary(
            "ListWorkspaces", self._admin.ListWorkspaces, request
        )
        return list(response.workspaces)

    async def update_workspace(
        self, workspace: common_pb2.Workspace, paths: Iterable[str]
    ) -> common_pb2.Workspace:
        """Only the fields named in ``paths`` (see admin.proto's update_mask list) change."""
        request = admin_pb2.UpdateWorkspaceRequest(
            workspace=workspace, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
        return await self._unary("UpdateWorkspace", self._admin.UpdateWorkspace, request)

    async def delete_workspace(self, name: str, force: bool = False) -> None:
        request = admin_pb2.DeleteWorkspaceRequest(name=name, force=force)
        await self._unary("DeleteWorkspace", self._admin.DeleteWorkspace, request)

    # ---- virtual keys ---------------------------------------------------------------------

    async def create_key(self, request: admin_pb2.CreateKeyRequest) -> admin_pb2.CreateKeyResponse:
        """The response's ``secret`` is the only time the key's secret is ever available."""
        return await self._unary("CreateKey", self._admin.CreateKey, request)

    async def create_keys(
        self, workspace: str, requests: list[admin_pb2.CreateKeyRequest]
    ) -> admin_pb2.CreateKeysResponse:
        """Several keys of one workspace, all or none; the secrets are only ever here."""
        request = admin_pb2.CreateKeysRequest(workspace=workspace, keys=requests)
        return await self._unary("CreateKeys", self._admin.CreateKeys, request)

    async def get_key(self, key_id: str) -> common_pb2.VirtualKey:
        request = admin_pb2.GetKeyRequest(id=key_id)
        return await self._unary("GetKey", self._admin.GetKey, request)

    async def list_keys(
        self, workspace: str = "", include_revoked: bool = False
    ) -> list[common_pb2.VirtualKey]:
        request = admin_pb2.ListKeysRequest(workspace=workspace, include_revoked=include_revoked)
        response: admin_pb2.ListKeysResponse = await self._unary(
            "ListKeys", self._admin.ListKeys, request
        )
        return list(response.keys)

    async def update_key(
        self, key: common_pb2.VirtualKey, paths: Iterable[str]
    ) -> common_pb2.VirtualKey:
        request = admin_pb2.UpdateKeyRequest(
            key=key, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
        return await self._unary("UpdateKey", self._admin.UpdateKey, request)

    async def revoke_key(self, key_id: str) -> common_pb2.VirtualKey:
        request = admin_pb2.RevokeKeyRequest(id=key_id)
        return await self._unary("RevokeKey", self._admin.RevokeKey, request)

    async def delete_key(self, key_id: str) -> None:
        request = admin_pb2.DeleteKeyRequest(id=key_id)
        await self._unary("DeleteKey", self._admin.DeleteKey, request)

    # ---- providers ------------------------------------------------------------------------

    async def create_provider(
        self, provider: common_pb2.Provider, api_key: str = ""
    ) -> common_pb2.Provider:
        """``api_key`` (optional) is stored encrypted on the control plane."""
        request = admin_pb2.CreateProviderRequest(provider=provider, api_key=api_key)
        return await self._unary("CreateProvider", self._admin.CreateProvider, request)

    async def rotate_provider_secret(self, name: str, api_key: str) -> common_pb2.Provider:
        """Store a new secret for provider ``name``; ``""`` removes the stored one."""
        request = admin_pb2.RotateProviderSecretRequest(name=name, api_key=api_key)
        return await self._unary("RotateProviderSecret", self._admin.RotateProviderSecret, request)

    async def get_provider(self, name: str) -> common_pb2.Provider:
        request = admin_pb2.GetProviderRequest(name=name)
        return await self._unary("GetProvider", self._admin.GetProvider, request)

    async def list_providers(self) -> list[common_pb2.Provider]:
        request = admin_pb2.ListProvidersRequest()
        response: admin_pb2.ListProvidersResponse = await self._unary(
            "ListProviders", self._admin.ListProviders, request
        )
        return list(response.providers)

    async def update_provider(
        self,
        provider: common_pb2.Provider,
        paths: Iterable[str],
        *,
        api_key: str = "",
        keep_secret: bool = False,
    ) -> common_pb2.Provider:
        """``api_key`` (optional) is stored encrypted with the update; a provider with a stored
        secret needs it, or ``keep_secret``, to change its base URL."""
        request = admin_pb2.UpdateProviderRequest(
            provider=provider,
            update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
            api_key=api_key,
            keep_secret=keep_secret,
        )
        return await self._unary("UpdateProvider", self._admin.UpdateProvider, request)

    async def validate(
        self,
        providers: Iterable[common_pb2.Provider] = (),
        routes: Iterable[common_pb2.Route] = (),
        workspaces: Iterable[common_pb2.Workspace] = (),
    ) -> list[admin_pb2.ValidationResult]:
        """A dry run of creating or updating each object: one result per object (its error, or
        the form the control plane would store), providers first, then routes, workspaces."""
        request = admin_pb2.ValidateRequest(
            providers=list(providers), routes=list(routes), workspaces=list(workspaces)
        )
        response: admin_pb2.ValidateResponse = await self._unary(
            "Validate", self._admin.Validate, request
        )
        return list(response.results)

    async def delete_provider(self, name: str) -> None:
        request = admin_pb2.DeleteProviderRequest(name=name)
        await self._unary("DeleteProvider", self._admin.DeleteProvider, request)

    # ---- routes ---------------------------------------------------------------------------

    async def create_route(self, route: common_pb2.Route) -> common_pb2.Route:
        request = admin_pb2.CreateRouteRequest(route=route)
        return await self._unary("CreateRoute", self._admin.CreateRoute, request)

    async def get_route(self, name: str) -> common_pb2.Route:
        request = admin_pb2.GetRouteRequest(name=name)
        return await self._unary("GetRoute", self._admin.GetRoute, request)

    async def list_routes(self) -> list[common_pb2.Route]:
        request = admin_pb2.ListRoutesRequest()
        response: admin_pb2.ListRoutesResponse = await self._unary(
            "ListRoutes", self._admin.ListRoutes, request
        )
        return list(response.routes)

    async def update_route(self, route: common_pb2.Route, paths: Iterable[str]) -> common_pb2.Route:
        request = admin_pb2.UpdateRouteRequest(
            route=route, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
        return await self._unary("UpdateRoute", self._admin.UpdateRoute, request)

    async def delete_route(self, name: str) -> None:
        request = admin_pb2.DeleteRouteRequest(name=name)
        await self._unary("DeleteRoute", self._admin.DeleteRoute, request)

    async def list_prices(self) -> list[common_pb2.Price]:
        request = admin_pb2.ListPricesRequest()
        response: admin_pb2.ListPricesResponse = await self._unary(
            "ListPrices", self._admin.ListPrices, request
        )
        return list(response.prices)

    # ---- admin tokens ---------------------------------------------------------------------

    async def create_token(
        self, name: str, role: str, workspaces: Iterable[str] = (), ttl_seconds: int = 0
    ) -> admin_pb2.CreateTokenResponse:
        """The response's ``secret`` (``tga-…``) is the only time the token is ever available."""
        request = admin_pb2.CreateTokenRequest(
            name=name, role=role, workspaces=list(workspaces), ttl_seconds=ttl_seconds
        )
        return await self._unary("CreateToken", self._admin.CreateToken, request)

    async def list_tokens(self, include_revoked: bool = False) -> list[admin_pb2.AdminToken]:
        request = admin_pb2.ListTokensRequest(include_revoked=include_revoked)
        response: admin_pb2.ListTokensResponse = await self._unary(
            "ListTokens", self._admin.ListTokens, request
        )
        return list(response.tokens)

    async def revoke_token(self, token_id: str) -> admin_pb2.AdminToken:
        request = admin_pb2.RevokeTokenRequest(id=token_id)
        return await self._unary("RevokeToken", self._admin.RevokeToken, request)

    async def whoami(self) -> admin_pb2.AdminToken:
        """The caller's own identity and role (works with any valid token)."""
        return await self._unary("WhoAmI", self._admin.WhoAmI, admin_pb2.WhoAmIRequest())

    # ---- telemetry destinations (where Claude Code's OTLP telemetry is forwarded) ----------

    async def list_telemetry_destinations(self) -> list[admin_pb2.TelemetryDestination]:
        request = admin_pb2.ListTelemetryDestinationsRequest()
        response: admin_pb2.ListTelemetryDestinationsResponse = await self._unary(
            "ListTelemetryDestinations", self._admin.ListTelemetryDestinations, request
        )
        return list(response.destinations)

    async def add_telemetry_destination(
        self, destination: admin_pb2.TelemetryDestination, headers: dict[str, str]
    ) -> admin_pb2.TelemetryDestination:
        """``headers`` values are secrets: stored encrypted, never returned."""
        request = admin_pb2.AddTelemetryDestinationRequest(destination=destination, headers=headers)
        return await self._unary(
            "AddTelemetryDestination", self._admin.AddTelemetryDestination, request
        )

    async def remove_telemetry_destination(self, name: str) -> None:
        request = admin_pb2.RemoveTelemetryDestinationRequest(name=name)
        await self._unary(
            "RemoveTelemetryDestination", self._admin.RemoveTelemetryDestination, request
        )

    # ---- sign-in with Claude Code: SSO and developers ------------------------------------

    async def get_sso(self) -> admin_pb2.SsoConfig:
        """``configured`` is false when sign-in is off; the client secret is never returned."""
        return await self._unary("GetSso", self._admin.GetSso, admin_pb2.GetSsoRequest())

    async def set_sso(
        self, sso: admin_pb2.SsoConfig, client_secret: str = "", paths: Iterable[str] = ()
    ) -> admin_pb2.SsoConfig:
        """Only the fields named in ``paths`` change (none = the whole configuration);
        ``client_secret`` (write only) is stored encrypted on the control plane."""
        request = admin_pb2.SetSsoRequest(
            sso=sso,
            client_secret=client_secret,
            update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
        )
        return await self._unary("SetSso", self._admin.SetSso, request)

    async def delete_sso(self) -> None:
        await self._unary("DeleteSso", self._admin.DeleteSso, admin_pb2.DeleteSsoRequest())

    async def rotate_signing_key(self) -> admin_pb2.SsoConfig:
        request = admin_pb2.RotateSigningKeyRequest()
        return await self._unary("RotateSigningKey", self._admin.RotateSigningKey, request)

    async def list_developers(
        self, workspace: str = "", include_disabled: bool = False
    ) -> list[common_pb2.Developer]:
        request = admin_pb2.ListDevelopersRequest(
            workspace=workspace, include_disabled=include_disabled
        )
        response: admin_pb2.ListDevelopersResponse = await self._unary(
            "ListDevelopers", self._admin.ListDevelopers, request
        )
        return list(response.developers)

    async def get_developer(self, id_or_email: str) -> common_pb2.Developer:
        request = admin_pb2.GetDeveloperRequest(id=id_or_email)
        return await self._unary("GetDeveloper", self._admin.GetDeveloper, request)

    async def update_developer(
        self,
        developer: common_pb2.Developer,
        paths: Iterable[str] = (),
        *,
        clear_limits: bool = False,
    ) -> common_pb2.Developer:
        """Set the developer's own limits (``paths``: limits, limits.budgets, …), or drop them
        with ``clear_limits`` (the workspace's member limits apply again)."""
        request = admin_pb2.UpdateDeveloperRequest(
            developer=developer,
            update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
            clear_limits=clear_limits,
        )
        return await self._unary("UpdateDeveloper", self._admin.UpdateDeveloper, request)

    async def disable_developer(self, id_or_email: str) -> common_pb2.Developer:
        request = admin_pb2.DisableDeveloperRequest(id=id_or_email)
        return await self._unary("DisableDeveloper", self._admin.DisableDeveloper, request)

    async def enable_developer(self, id_or_email: str) -> common_pb2.Developer:
        request = admin_pb2.EnableDeveloperRequest(id=id_or_email)
        return await self._unary("EnableDeveloper", self._admin.EnableDeveloper, request)

    # ---- discovery & telemetry ------------------------------------------------------------

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

    async def tail_logs(
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
        call = self._telemetry.TailLogs(
            request, metadata=self._metadata, timeout=None if follow else self.timeout
        )
        try:
            async for event in call:
                yield event
        except aio.AioRpcError as exc:
            raise translate_error(exc, self.target, "TailLogs", tls=self._tls) from None
        finally:
            call.cancel()

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

    async def tail_audit(
        self, *, follow: bool = False, limit: int = 20, workspace: str = ""
    ) -> AsyncIterator[admin_pb2.AuditEvent]:
        """The last ``limit`` admin changes, oldest first; with ``follow`` then each new one as
        it commits, until cancelled (only the connection is bounded by the timeout then)."""
        request = admin_pb2.TailAuditRequest(follow=follow, limit=limit, workspace=workspace)
        call = self._admin.TailAudit(
            request, metadata=self._metadata, timeout=None if follow else self.timeout
        )
        try:
            async for event in call:
                yield event
        except aio.AioRpcError as exc:
            raise translate_error(exc, self.target, "TailAudit", tls=self._tls) from None
        finally:
            call.cancel()

    async def stream_stats(
        self, group_by: str, window_s: int = 60, workspace: str = ""
    ) -> AsyncIterator[telemetry_pb2.StatsFrame]:
        """Live stats per ``group_by`` (workspace | key | developer | provider): a frame a
        second until cancelled. An older control plane raises ClientError(UNIMPLEMENTED)."""
        request = telemetry_pb2.StreamStatsRequest(
            group_by=group_by, window_s=window_s, workspace=workspace
        )
        call = self._telemetry.StreamStats(request, metadata=self._metadata, timeout=None)
        try:
            async for frame in call:
                yield frame
        except aio.AioRpcError as exc:
            raise translate_error(exc, self.target, "StreamStats", tls=self._tls) from None
        finally:
            call.cancel()
