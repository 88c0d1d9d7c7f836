"""The OAuth endpoints Claude Code calls: discovery, device authorization, token.

* ``GET /.well-known/oauth-authorization-server`` — RFC 8414 metadata built from the public URL
  (the client requires both endpoints on the base URL's origin), only while the snapshot says
  sign-in is enabled;
* ``POST /oauth/device_authorization`` — an empty form; per-address rate limit (``429
  slow_down``); one ``SignIn.StartDevice``;
* ``POST /oauth/token`` — the device-code grant (``SignIn.PollDevice``) and the refresh grant
  (``SignIn.Refresh``).

Every answer is JSON with ``Cache-Control: no-store``; every error is the OAuth shape
``{"error", "error_description"}`` with the status the control plane chose (pending and
slow_down 400, invalid_grant 401…). When the control plane cannot answer the data plane says
``503 temporarily_unavailable``: Claude Code keeps polling, and a refresh is retried.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

import orjson

from dataplane.asgi import ClientDisconnected, Header, Receive, Scope, Send, send_response
from dataplane.edge.signin.client import SignInUnavailable
from dataplane.edge.signin.context import (
    FormError,
    SignInContext,
    client_ip,
    read_form,
    user_agent,
)
from dataplane.edge.signin.publicurl import MISSING
from gwapi.v1 import signin_pb2

DISCOVERY = "/.well-known/oauth-authorization-server"
DEVICE_AUTHORIZATION = "/oauth/device_authorization"
TOKEN = "/oauth/token"
DEVICE_PAGE = "/device"

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT = "refresh_token"

NO_STORE: tuple[Header, ...] = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
UNAVAILABLE = (
    "The gateway cannot reach its control plane right now; try again in a minute. If this "
    "persists, tell your platform team."
)
NOT_ENABLED = (
    "Sign-in with Claude Code is not enabled on this gateway. Ask your platform team, or use a "
    "virtual key (gw-…)."
)


async def send_json(send: Send, status: int, body: object, headers: Iterable[Header] = ()) -> None:
    await send_response(send, status, orjson.dumps(body), [*NO_STORE, *headers])


async def send_oauth_error(
    send: Send, status: int, error: str, description: str, headers: Iterable[Header] = ()
) -> None:
    """RFC 6749 §5.2 error JSON."""
    await send_json(send, status, {"error": error, "error_description": description}, headers)


class OAuthEndpoints:
    def __init__(self, ctx: SignInContext) -> None:
        self.ctx = ctx

    async def _base(self, scope: Scope, send: Send, method: str) -> str | None:
        """The public URL when the endpoint may answer; otherwise answer the error, None."""
        if scope["method"] != method:
            await send_oauth_error(
                send, 405, "invalid_request", f"Use {method}.", [(b"allow", method.encode())]
            )
            return None
        snapshot = self.ctx.holder.current
        if snapshot is None:
            await send_oauth_error(
                send,
                503,
                "temporarily_unavailable",
                "The gateway has not received its configuration yet; try again shortly.",
                [(b"retry-after", b"2")],
            )
            return None
        if not snapshot.sso.enabled:
            await send_oauth_error(send, 404, "not_configured", NOT_ENABLED)
            return None
        base = self.ctx.public_url.resolve(scope)
        if base is None:
            await send_oauth_error(send, 500, "server_error", MISSING)
            return None
        return base

    async def discovery(self, scope: Scope, receive: Receive, send: Send) -> None:
        base = await self._base(scope, send, "GET")
        if base is None:
            return
        await send_json(
            send,
            200,
            {
                "issuer": base,
                "device_authorization_endpoint": base + DEVICE_AUTHORIZATION,
                "token_endpoint": base + TOKEN,
                "grant_types_supported": [DEVICE_GRANT, REFRESH_GRANT],
                "token_endpoint_auth_methods_supported": ["none"],
            },
        )

    async def device_authorization(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self.ctx
        base = await self._base(scope, send, "POST")
        if base is None:
            return
        ip = client_ip(scope)
        wait = ctx.device_limit.take(ip)
        if wait:
            if ctx.metrics is not None:
                ctx.metrics.limited("device_authorization")
                ctx.metrics.device_authorization("rate_limited")
            await send_oauth_error(
                send,
                429,
                "slow_down",
                f"Too many sign-ins started from this address; wait {wait} s and run /login again.",
                [(b"retry-after", str(wait).encode())],
            )
            return
        try:
            await read_form(receive, scope)  # RFC 8628 client_id/scope: accepted, not needed
            response = await ctx.client.start_device(
                signin_pb2.StartDeviceRequest(
                    public_url=base, client_ip=ip, user_agent=user_agent(scope)
                )
            )
        except ClientDisconnected:
            return
        except FormError as err:
            await send_oauth_error(send, err.status, "invalid_request", err.description)
            return
        except SignInUnavailable:
            self._count_device("unavailable")
            await send_oauth_error(
                send, 503, "temporarily_unavailable", UNAVAILABLE, [(b"retry-after", b"5")]
            )
            return
        if response.error.error:
            self._count_device(response.error.error)
            await self._oauth_error(send, response.error)
            return
        self._count_device("ok")
        page = base + DEVICE_PAGE
        await send_json(
            send,
            200,
            {
                "device_code": response.device_code,
                "user_code": response.user_code,
                "verification_uri": page,
                "verification_uri_complete": f"{page}?user_code={quote(response.user_code)}",
                "expires_in": response.expires_in,
                "interval": response.interval,
            },
        )

    async def token(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self.ctx
        if await self._base(scope, send, "POST") is None:
            return
        grant = "other"
        try:
            form = await read_form(receive, scope)
            grant_type = form.get("grant_type", "")
            ip = client_ip(scope)
            if grant_type == DEVICE_GRANT:
                grant = "device_code"
                code = _required(form, "device_code")
                response = await ctx.client.poll_device(
                    signin_pb2.PollDeviceRequest(device_code=code, client_ip=ip)
                )
            elif grant_type == REFRESH_GRANT:
                grant = "refresh_token"
                refresh = _required(form, "refresh_token")
                response = await ctx.client.refresh(
                    signin_pb2.RefreshRequest(refresh_token=refresh, client_ip=ip)
                )
            elif not grant_type:
                raise FormError(400, "Parameter 'grant_type' is missing.")
            else:
                self._count_token(grant, "unsupported_grant_type")
                await send_oauth_error(
                    send,
                    400,
                    "unsupported_grant_type",
                    f"This gateway accepts the grant types {DEVICE_GRANT} and {REFRESH_GRANT}.",
                )
                return
        except ClientDisconnected:
            return
        except FormError as err:
            self._count_token(grant, "invalid_request")
            await send_oauth_error(send, err.status, "invalid_request", err.description)
            return
        except SignInUnavailable:
            self._count_token(grant, "unavailable")
            await send_oauth_error(
                send, 503, "temporarily_unavailable", UNAVAILABLE, [(b"retry-after", b"5")]
            )
            return
        if response.error.error:
            self._count_token(grant, response.error.error)
            await self._oauth_error(send, response.error)
            return
        if not response.access_token:  # neither tokens nor an error: the control plane erred
            self._count_token(grant, "unavailable")
            await send_oauth_error(send, 503, "temporarily_unavailable", UNAVAILABLE)
            return
        self._count_token(grant, "ok")
        body: dict[str, object] = {
            "access_token": response.access_token,
            "token_type": response.token_type or "Bearer",
            "expires_in": response.expires_in,
        }
        if response.refresh_token:
            body["refresh_token"] = response.refresh_token
        await send_json(send, 200, body)

    @staticmethod
    async def _oauth_error(send: Send, error: signin_pb2.OAuthError) -> None:
        status = error.http_status if 400 <= error.http_status <= 599 else 400
        extra: list[Header] = []
        if status == 429:
            extra.append((b"retry-after", b"5"))
        await send_oauth_error(send, status, error.error, error.error_description, extra)

    def _count_device(self, outcome: str) -> None:
        if self.ctx.metrics is not None:
            self.ctx.metrics.device_authorization(outcome)

    def _count_token(self, grant: str, outcome: str) -> None:
        if self.ctx.metrics is not None:
            self.ctx.metrics.token(grant, outcome)


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise FormError(400, f"Parameter '{name}' is missing.")
    return value
