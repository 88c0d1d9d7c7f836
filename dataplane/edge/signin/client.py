"""The data plane's client of the control plane's ``SignIn`` service (one call per OAuth step).

It rides the channel the data plane already has to the control plane (same address, TLS CA and
data-plane token as the snapshot stream and the usage reporter) with a short deadline per call:
a browser or a polling Claude Code must get an answer, not a hang. OAuth outcomes (pending,
slow_down, invalid_grant…) come back *in* the responses; any gRPC failure — the control plane
down, slow, or refusing this data plane — becomes :class:`SignInUnavailable`, which the endpoints
answer as ``503 temporarily_unavailable`` (logged here, never shown with its details).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from gwapi.v1 import signin_pb2, signin_pb2_grpc

log = logging.getLogger("tollgate.signin")

# Seconds. The browser steps may make the control plane talk to the identity provider (its
# discovery document, JWKS, the code exchange), so they get longer than the device and token
# calls, which only touch the control plane's database.
QUICK_DEADLINE_S = 5.0
BROWSER_DEADLINE_S = 15.0

R = TypeVar("R")


class SignInUnavailable(Exception):
    """The control plane could not decide (unreachable, deadline, refused this data plane)."""


class SignInClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        token: str,
        quick_deadline_s: float = QUICK_DEADLINE_S,
        browser_deadline_s: float = BROWSER_DEADLINE_S,
    ) -> None:
        self.stub = signin_pb2_grpc.SignInStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.quick = quick_deadline_s
        self.browser = browser_deadline_s

    async def start_device(
        self, request: signin_pb2.StartDeviceRequest
    ) -> signin_pb2.StartDeviceResponse:
        return await self._call("StartDevice", self.stub.StartDevice, request, self.quick)

    async def poll_device(self, request: signin_pb2.PollDeviceRequest) -> signin_pb2.TokenResponse:
        return await self._call("PollDevice", self.stub.PollDevice, request, self.quick)

    async def refresh(self, request: signin_pb2.RefreshRequest) -> signin_pb2.TokenResponse:
        return await self._call("Refresh", self.stub.Refresh, request, self.quick)

    async def begin_browser(
        self, request: signin_pb2.BeginBrowserRequest
    ) -> signin_pb2.BeginBrowserResponse:
        return await self._call("BeginBrowser", self.stub.BeginBrowser, request, self.browser)

    async def complete_browser(
        self, request: signin_pb2.CompleteBrowserRequest
    ) -> signin_pb2.CompleteBrowserResponse:
        return await self._call("CompleteBrowser", self.stub.CompleteBrowser, request, self.browser)

    async def _call(
        self,
        name: str,
        method: Callable[..., Awaitable[R]],
        request: object,
        deadline_s: float,
    ) -> R:
        try:
            return await method(request, metadata=self.metadata, timeout=deadline_s)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "sign-in step %s failed: the control plane answered %s (%s)",
                name,
                exc.code().name,
                exc.details(),
            )
            raise SignInUnavailable(exc.code().name) from None
