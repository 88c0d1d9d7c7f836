"""Dispatch of the sign-in paths (unauthenticated: they sit beside the API routes, not behind
the auth middleware)."""

from __future__ import annotations

from dataplane.asgi import Receive, Scope, Send
from dataplane.edge.signin.browser import CALLBACK, BrowserPages
from dataplane.edge.signin.context import SignInContext
from dataplane.edge.signin.oauth import (
    DEVICE_AUTHORIZATION,
    DEVICE_PAGE,
    DISCOVERY,
    TOKEN,
    OAuthEndpoints,
)

PATHS = frozenset({DISCOVERY, DEVICE_AUTHORIZATION, TOKEN, DEVICE_PAGE, CALLBACK})


class SignInRoutes:
    def __init__(self, ctx: SignInContext) -> None:
        self.ctx = ctx
        oauth = OAuthEndpoints(ctx)
        browser = BrowserPages(ctx)
        self._handlers = {
            DISCOVERY: oauth.discovery,
            DEVICE_AUTHORIZATION: oauth.device_authorization,
            TOKEN: oauth.token,
            DEVICE_PAGE: browser.device,
            CALLBACK: browser.callback,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handlers[scope["path"]](scope, receive, send)
