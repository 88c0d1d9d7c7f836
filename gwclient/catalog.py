"""The admin client's calls on the gateway's configuration: workspaces, virtual keys, providers,
routes, prices and telemetry destinations (the Admin service's catalog RPCs).

Methods take plain values or protobuf messages and return protobuf messages; ``paths`` name the
fields an update changes (see admin.proto's ``update_mask`` lists).
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import field_mask_pb2

from gwapi.v1 import admin_pb2, common_pb2
from gwclient.channel import Channel

__all__ = ["CatalogCalls"]


class CatalogCalls(Channel):
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
