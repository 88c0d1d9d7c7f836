"""Admin-token RPCs of the Admin service (CreateToken, ListTokens, RevokeToken, WhoAmI), as a
mixin of :class:`~controlplane.services.admin.AdminService`.

Who may call them is decided by :mod:`controlplane.rpc_policies` (create/list/revoke: admin only;
WhoAmI: every principal). Revoking drops the token from this process's authentication cache at
once (other replicas: within the cache's lifetime, see :mod:`controlplane.auth`).
"""

from __future__ import annotations

import logging
from typing import Any

from controlplane import identity
from controlplane.catalog import tokens
from controlplane.errors import grpc_errors
from controlplane.services.state import AppState
from gwapi.v1 import admin_pb2 as apb

log = logging.getLogger(__name__)
Ctx = Any  # grpc.aio.ServicerContext


@grpc_errors
class TokenRpcs:
    _s: AppState

    async def CreateToken(
        self, request: apb.CreateTokenRequest, context: Ctx
    ) -> apb.CreateTokenResponse:
        creator = identity.principal().id
        # change: one transaction with the audit row, published to TailAudit after the commit
        # (no snapshot rebuild: data planes know nothing of admin tokens)
        token, secret = await self._s.change(lambda s, now: tokens.create(s, request, now, creator))
        log.info("token %s (%s) created by %s", token.id, token.role, creator)  # never the secret
        return apb.CreateTokenResponse(token=token, secret=secret)

    async def ListTokens(
        self, request: apb.ListTokensRequest, context: Ctx
    ) -> apb.ListTokensResponse:
        items = await self._s.db.read(lambda s: tokens.list_tokens(s, request.include_revoked))
        return apb.ListTokensResponse(tokens=items)

    async def RevokeToken(self, request: apb.RevokeTokenRequest, context: Ctx) -> apb.AdminToken:
        token = await self._s.change(lambda s, now: tokens.revoke(s, request.id, now))
        if self._s.authenticator is not None:
            self._s.authenticator.forget(token.id)
        log.info("token %s revoked by %s", token.id, identity.principal().id)
        return token

    async def WhoAmI(self, request: apb.WhoAmIRequest, context: Ctx) -> apb.AdminToken:
        me = identity.principal()
        if not me.id.startswith("tok_"):  # the bootstrap admin token has no row
            return tokens.principal_to_pb(me)
        token_id = me.id
        return await self._s.db.read(lambda s: tokens.to_pb(tokens.get_row(s, token_id)))
