"""The Admin service: thin translation between gwapi.v1 requests and the catalog.

Reads go straight to the database (Get/List of keys and workspaces add each budget's current
spend from the ledger); every mutation goes through ``AppState.mutate`` (one
transaction, then a snapshot rebuild). Errors are mapped by :func:`controlplane.errors.grpc_errors`.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.empty_pb2 import Empty

from controlplane.catalog import (
    developers,
    keys,
    prices,
    providers,
    routes,
    sso,
    validate,
    workspaces,
)
from controlplane.catalog.common import now_ms
from controlplane.domain.errors import InvalidArgument
from controlplane.errors import grpc_errors
from controlplane.identity import principal
from controlplane.services.audit import AuditRpcs
from controlplane.services.state import AppState
from controlplane.services.telemetry_destinations import TelemetryDestinationRpcs
from controlplane.services.tokens import TokenRpcs
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import admin_pb2_grpc
from gwapi.v1 import common_pb2 as pb

log = logging.getLogger(__name__)
Ctx = Any  # grpc.aio.ServicerContext (grpc ships no type information)


@grpc_errors
class AdminService(TokenRpcs, AuditRpcs, TelemetryDestinationRpcs, admin_pb2_grpc.AdminServicer):
    def __init__(self, state: AppState) -> None:
        self._s = state

    # -- workspaces -------------------------------------------------------------------------

    async def CreateWorkspace(
        self, request: apb.CreateWorkspaceRequest, context: Ctx
    ) -> pb.Workspace:
        internal = self._s.settings.allow_internal_webhooks
        ws = await self._s.mutate(
            lambda s, now: workspaces.create(
                s, request.workspace, now, allow_internal_webhooks=internal
            )
        )
        log.info("workspace %s created", ws.name)
        return ws

    async def GetWorkspace(self, request: apb.GetWorkspaceRequest, context: Ctx) -> pb.Workspace:
        now = now_ms()
        return await self._s.db.read(lambda s: workspaces.get(s, request.name, now))

    async def ListWorkspaces(
        self, request: apb.ListWorkspacesRequest, context: Ctx
    ) -> apb.ListWorkspacesResponse:
        now = now_ms()
        scope = principal().workspaces  # rpc_policies.py: ListWorkspaces is filtered to the token's
        items = await self._s.db.read(lambda s: workspaces.list_all(s, now, scope))
        return apb.ListWorkspacesResponse(workspaces=items)

    async def UpdateWorkspace(
        self, request: apb.UpdateWorkspaceRequest, context: Ctx
    ) -> pb.Workspace:
        internal = self._s.settings.allow_internal_webhooks
        ws = await self._s.mutate(
            lambda s, now: workspaces.update(
                s, request.workspace, request.update_mask, now, allow_internal_webhooks=internal
            )
        )
        log.info("workspace %s updated (%s)", ws.name, ",".join(request.update_mask.paths) or "*")
        return ws

    async def DeleteWorkspace(self, request: apb.DeleteWorkspaceRequest, context: Ctx) -> Empty:
        await self._s.mutate(
            lambda s, now: workspaces.delete_workspace(s, request.name, request.force, now)
        )
        log.info("workspace %s deleted%s", request.name, " (forced)" if request.force else "")
        return Empty()

    # -- keys -------------------------------------------------------------------------------

    async def CreateKey(self, request: apb.CreateKeyRequest, context: Ctx) -> apb.CreateKeyResponse:
        key, secret = await self._s.mutate(lambda s, now: keys.create(s, request, now))
        log.info("key %s created in workspace %s", key.id, key.workspace)  # never the secret
        return apb.CreateKeyResponse(key=key, secret=secret)

    async def CreateKeys(
        self, request: apb.CreateKeysRequest, context: Ctx
    ) -> apb.CreateKeysResponse:
        for req in request.keys:
            if req.workspace and req.workspace != request.workspace:
                raise InvalidArgument(
                    f"key {req.name!r} is in workspace {req.workspace!r}, not the request's "
                    f"{request.workspace!r}: one workspace per CreateKeys call"
                )
            req.workspace = request.workspace
        created = await self._s.mutate(lambda s, now: keys.create_many(s, request.keys, now))
        log.info("%d keys created in workspace %s", len(created), request.workspace)
        return apb.CreateKeysResponse(
            keys=[apb.CreateKeyResponse(key=key, secret=secret) for key, secret in created]
        )

    async def GetKey(self, request: apb.GetKeyRequest, context: Ctx) -> pb.VirtualKey:
        now = now_ms()
        return await self._s.db.read(lambda s: keys.get(s, request.id, now))

    async def ListKeys(self, request: apb.ListKeysRequest, context: Ctx) -> apb.ListKeysResponse:
        now = now_ms()
        scope = principal().workspaces
        items = await self._s.db.read(
            lambda s: keys.list_keys(s, request.workspace, request.include_revoked, now, scope)
        )
        return apb.ListKeysResponse(keys=items)

    async def UpdateKey(self, request: apb.UpdateKeyRequest, context: Ctx) -> pb.VirtualKey:
        key = await self._s.mutate(
            lambda s, now: keys.update(s, request.key, request.update_mask, now)
        )
        log.info("key %s updated (%s)", key.id, ",".join(request.update_mask.paths) or "*")
        return key

    async def RevokeKey(self, request: apb.RevokeKeyRequest, context: Ctx) -> pb.VirtualKey:
        key = await self._s.mutate(lambda s, now: keys.revoke(s, request.id, now))
        log.info("key %s revoked", key.id)
        return key

    async def DeleteKey(self, request: apb.DeleteKeyRequest, context: Ctx) -> Empty:
        await self._s.mutate(lambda s, now: keys.delete_key(s, request.id, now))
        log.info("key %s deleted", request.id)
        return Empty()

    # -- providers --------------------------------------------------------------------------

    async def CreateProvider(self, request: apb.CreateProviderRequest, context: Ctx) -> pb.Provider:
        master = self._s.cache.master
        prov = await self._s.mutate(
            lambda s, now: providers.create(s, request.provider, now, request.api_key, master)
        )
        log.info(
            "provider %s (%s) created%s",
            prov.name,
            prov.kind,
            " with a stored secret" if prov.has_secret else "",
        )
        return prov

    async def GetProvider(self, request: apb.GetProviderRequest, context: Ctx) -> pb.Provider:
        return await self._s.db.read(lambda s: providers.get(s, request.name))

    async def ListProviders(
        self, request: apb.ListProvidersRequest, context: Ctx
    ) -> apb.ListProvidersResponse:
        return apb.ListProvidersResponse(providers=await self._s.db.read(providers.list_all))

    async def UpdateProvider(self, request: apb.UpdateProviderRequest, context: Ctx) -> pb.Provider:
        master = self._s.cache.master
        prov = await self._s.mutate(
            lambda s, now: providers.update(
                s,
                request.provider,
                request.update_mask,
                now,
                api_key=request.api_key,
                keep_secret=request.keep_secret,
                master=master,
            )
        )
        log.info(
            "provider %s updated (%s)%s",
            prov.name,
            ",".join(request.update_mask.paths) or "*",
            " with a new stored secret" if request.api_key else "",
        )  # never the secret
        return prov

    async def RotateProviderSecret(
        self, request: apb.RotateProviderSecretRequest, context: Ctx
    ) -> pb.Provider:
        master = self._s.cache.master
        prov = await self._s.mutate(
            lambda s, now: providers.rotate_secret(s, request.name, request.api_key, now, master)
        )
        log.info(
            "provider %s: secret %s", prov.name, "rotated" if prov.has_secret else "removed"
        )  # never the secret
        return prov

    async def DeleteProvider(self, request: apb.DeleteProviderRequest, context: Ctx) -> Empty:
        await self._s.mutate(lambda s, now: providers.delete_provider(s, request.name, now))
        log.info("provider %s deleted", request.name)
        return Empty()

    # -- routes -----------------------------------------------------------------------------

    async def CreateRoute(self, request: apb.CreateRouteRequest, context: Ctx) -> pb.Route:
        route = await self._s.mutate(lambda s, now: routes.create(s, request.route, now))
        log.info("route %s created", route.name)
        return route

    async def GetRoute(self, request: apb.GetRouteRequest, context: Ctx) -> pb.Route:
        return await self._s.db.read(lambda s: routes.get(s, request.name))

    async def ListRoutes(
        self, request: apb.ListRoutesRequest, context: Ctx
    ) -> apb.ListRoutesResponse:
        return apb.ListRoutesResponse(routes=await self._s.db.read(routes.list_all))

    async def UpdateRoute(self, request: apb.UpdateRouteRequest, context: Ctx) -> pb.Route:
        route = await self._s.mutate(
            lambda s, now: routes.update(s, request.route, request.update_mask, now)
        )
        log.info("route %s updated (%s)", route.name, ",".join(request.update_mask.paths) or "*")
        return route

    async def DeleteRoute(self, request: apb.DeleteRouteRequest, context: Ctx) -> Empty:
        await self._s.mutate(lambda s, now: routes.delete_route(s, request.name, now))
        log.info("route %s deleted", request.name)
        return Empty()

    async def Validate(self, request: apb.ValidateRequest, context: Ctx) -> apb.ValidateResponse:
        internal = self._s.settings.allow_internal_webhooks
        now = now_ms()
        return await self._s.db.dry_run(
            lambda s: validate.validate(s, request, now, allow_internal_webhooks=internal)
        )

    # -- prices -----------------------------------------------------------------------------

    async def ListPrices(
        self, request: apb.ListPricesRequest, context: Ctx
    ) -> apb.ListPricesResponse:
        return apb.ListPricesResponse(prices=await self._s.db.read(prices.list_all))

    # -- sign-in with Claude Code: SSO ------------------------------------------------------

    async def GetSso(self, request: apb.GetSsoRequest, context: Ctx) -> apb.SsoConfig:
        return await self._s.db.read(sso.get)

    async def SetSso(self, request: apb.SetSsoRequest, context: Ctx) -> apb.SsoConfig:
        master = self._s.cache.master
        config = await self._s.mutate(lambda s, now: sso.set_sso(s, request, now, master))
        self._s.signin.directory.forget()  # a new issuer's documents are fetched afresh
        log.info("sign-in configured (issuer %s)", config.issuer)  # never the client secret
        return config

    async def DeleteSso(self, request: apb.DeleteSsoRequest, context: Ctx) -> Empty:
        await self._s.mutate(lambda s, now: sso.delete(s, now))
        self._s.signin.directory.forget()
        log.info("sign-in turned off: signing keys deleted, every refresh token revoked")
        return Empty()

    async def RotateSigningKey(
        self, request: apb.RotateSigningKeyRequest, context: Ctx
    ) -> apb.SsoConfig:
        master = self._s.cache.master
        config = await self._s.mutate(lambda s, now: sso.rotate_signing_key(s, now, master))
        log.info("sign-in: new access-token signing key %s", config.signing_key_id)
        return config

    # -- developers ---------------------------------------------------------------------------

    async def ListDevelopers(
        self, request: apb.ListDevelopersRequest, context: Ctx
    ) -> apb.ListDevelopersResponse:
        now = now_ms()
        scope = principal().workspaces
        items = await self._s.db.read(
            lambda s: developers.list_developers(
                s, request.workspace, request.include_disabled, now, scope
            )
        )
        return apb.ListDevelopersResponse(developers=items)

    async def GetDeveloper(self, request: apb.GetDeveloperRequest, context: Ctx) -> pb.Developer:
        now = now_ms()
        return await self._s.db.read(lambda s: developers.get(s, request.id, now))

    async def UpdateDeveloper(
        self, request: apb.UpdateDeveloperRequest, context: Ctx
    ) -> pb.Developer:
        dev = await self._s.mutate(lambda s, now: developers.update(s, request, now))
        log.info("developer %s updated", dev.id)
        return dev

    async def DisableDeveloper(
        self, request: apb.DisableDeveloperRequest, context: Ctx
    ) -> pb.Developer:
        dev = await self._s.mutate(lambda s, now: developers.disable(s, request.id, now))
        log.info("developer %s disabled: tokens refused, sessions revoked", dev.id)
        return dev

    async def EnableDeveloper(
        self, request: apb.EnableDeveloperRequest, context: Ctx
    ) -> pb.Developer:
        dev = await self._s.mutate(lambda s, now: developers.enable(s, request.id, now))
        log.info("developer %s enabled", dev.id)
        return dev
