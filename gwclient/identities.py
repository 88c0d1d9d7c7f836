"""The admin client's calls on who may use the gateway and its admin API: admin tokens, the SSO
configuration (sign-in with Claude Code) and the developers who signed in.

Secrets (a new token, the SSO client secret) are write-once: a response carries a new token's
secret once, and the SSO client secret is never returned.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import field_mask_pb2

from gwapi.v1 import admin_pb2, common_pb2
from gwclient.channel import Channel

__all__ = ["IdentityCalls"]


class IdentityCalls(Channel):
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
