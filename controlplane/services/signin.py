"""The SignIn service (data-plane token): each OAuth step a data plane serves becomes one call.

Thin: the rules live in :mod:`controlplane.signin`. OAuth outcomes are answers in the response
(``OAuthError``); gRPC errors only mean the control plane could not decide (the data plane then
answers 503 ``temporarily_unavailable``).
"""

from __future__ import annotations

from typing import Any

from controlplane.errors import grpc_errors
from controlplane.signin.engine import SignIn
from gwapi.v1 import signin_pb2 as spb
from gwapi.v1 import signin_pb2_grpc

Ctx = Any  # grpc.aio.ServicerContext


@grpc_errors
class SignInService(signin_pb2_grpc.SignInServicer):
    def __init__(self, engine: SignIn) -> None:
        self._e = engine

    async def StartDevice(
        self, request: spb.StartDeviceRequest, context: Ctx
    ) -> spb.StartDeviceResponse:
        return await self._e.start_device(request)

    async def PollDevice(self, request: spb.PollDeviceRequest, context: Ctx) -> spb.TokenResponse:
        return await self._e.poll_device(request)

    async def BeginBrowser(
        self, request: spb.BeginBrowserRequest, context: Ctx
    ) -> spb.BeginBrowserResponse:
        return await self._e.begin_browser(request)

    async def CompleteBrowser(
        self, request: spb.CompleteBrowserRequest, context: Ctx
    ) -> spb.CompleteBrowserResponse:
        return await self._e.complete_browser(request)

    async def Refresh(self, request: spb.RefreshRequest, context: Ctx) -> spb.TokenResponse:
        return await self._e.refresh(request)
