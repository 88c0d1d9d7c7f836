"""Sign-in tests: a real control plane (with a master key) over gRPC, the strict fake identity
provider (:mod:`tests.fakes.oidc`), and a :class:`Flow` that drives the steps a data plane would
call, as the data-plane token. The engine's clock is a :class:`Clock` the tests move forward
(grants and refresh tokens expire without sleeping).
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from controlplane.server import Running, running
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import signin_pb2 as spb
from tests.controlplane.conftest import ADMIN_TOKEN, DATAPLANE_TOKEN, Clients, make_settings
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc, Login

MASTER_KEY = base64.b64encode(b"m" * 32).decode()
PUBLIC = "https://gw.example.test"
CALLBACK = PUBLIC + "/oauth/callback"
ALICE = Login(sub="sub-alice", email="alice@example.com", name="Alice", groups=["platform-eng"])


class Clock:
    """Milliseconds, starting at the real time; ``advance`` moves it."""

    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@pytest.fixture
async def cp(db_url: str) -> AsyncIterator[Running]:
    async with running(make_settings(db_url, master_key=MASTER_KEY)) as r:
        yield r


@pytest.fixture
def clock(cp: Running) -> Clock:
    c = Clock()
    cp.state.signin.clock = c
    return c


@pytest.fixture
async def idp() -> AsyncIterator[FakeOidc]:
    fake = FakeOidc()
    await fake.start()
    fake.register_redirect_uri(CALLBACK)
    try:
        yield fake  # a correct gateway never makes it refuse a request (tests.fakes.strict)
    finally:
        await fake.stop()


@pytest.fixture
def dp(channel: Any) -> Clients:
    return Clients(channel, DATAPLANE_TOKEN)


@pytest.fixture
def boot(channel: Any) -> Clients:
    return Clients(channel, ADMIN_TOKEN)


async def configure(admin: Any, idp: FakeOidc, **fields: Any) -> apb.SsoConfig:
    sso = apb.SsoConfig(issuer=idp.issuer, client_id=CLIENT_ID, **fields)
    return await admin.SetSso(apb.SetSsoRequest(sso=sso, client_secret=CLIENT_SECRET))


async def workspace(admin: Any, name: str, groups: list[str], **fields: Any) -> pb.Workspace:
    msg = pb.Workspace(name=name, sso_groups=groups, **fields)
    return await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=msg))


@dataclass
class Begun:
    start: spb.StartDeviceResponse
    begin: spb.BeginBrowserResponse


@dataclass
class Flow:
    """The data plane's side of a sign-in, one SignIn call per step."""

    dp: Clients
    idp: FakeOidc
    clock: Clock

    async def start(self) -> spb.StartDeviceResponse:
        return await self.dp.signin.StartDevice(
            spb.StartDeviceRequest(public_url=PUBLIC, client_ip="192.0.2.7")
        )

    async def begin(self, user_code: str) -> spb.BeginBrowserResponse:
        return await self.dp.signin.BeginBrowser(
            spb.BeginBrowserRequest(user_code=user_code, public_url=PUBLIC, client_ip="192.0.2.8")
        )

    async def started(self) -> Begun:
        start = await self.start()
        begin = await self.begin(start.user_code)
        assert begin.authorization_url, begin
        return Begun(start, begin)

    async def complete(
        self, begin: spb.BeginBrowserResponse, callback: dict[str, str], **overrides: Any
    ) -> spb.CompleteBrowserResponse:
        fields: dict[str, Any] = {
            "state": callback.get("state", ""),
            "code": callback.get("code", ""),
            "iss": callback.get("iss", ""),
            "error": callback.get("error", ""),
            "error_description": callback.get("error_description", ""),
            "browser_secret": begin.browser_secret,
            "client_ip": "192.0.2.8",
            "public_url": PUBLIC,
        }
        fields.update(overrides)
        return await self.dp.signin.CompleteBrowser(spb.CompleteBrowserRequest(**fields))

    async def browser(
        self, begun: Begun, login: Login | None = None
    ) -> spb.CompleteBrowserResponse:
        """The person confirms the code and signs in at the IdP as ``login``."""
        if login is not None:
            self.idp.next_login(login)
        callback = await self.idp.authorize(begun.begin.authorization_url)
        return await self.complete(begun.begin, callback)

    async def poll(self, device_code: str) -> spb.TokenResponse:
        return await self.dp.signin.PollDevice(
            spb.PollDeviceRequest(device_code=device_code, client_ip="192.0.2.7")
        )

    async def refresh(self, token: str) -> spb.TokenResponse:
        return await self.dp.signin.Refresh(
            spb.RefreshRequest(refresh_token=token, client_ip="192.0.2.7")
        )

    async def sign_in(self, login: Login = ALICE) -> spb.TokenResponse:
        """A whole successful sign-in; returns the tokens of the first poll after approval."""
        begun = await self.started()
        done = await self.browser(begun, login)
        assert done.ok, done
        tokens = await self.poll(begun.start.device_code)
        assert tokens.access_token and not tokens.HasField("error"), tokens
        return tokens


@pytest.fixture
async def ready(cp: Running, admin: Any, idp: FakeOidc) -> Any:
    """SSO configured against the fake IdP, a simulator provider, and workspace ``platform``
    for the group ``platform-eng``."""
    await admin.CreateProvider(
        apb.CreateProviderRequest(provider=pb.Provider(name="sim", kind="simulator"))
    )
    await configure(admin, idp)
    await workspace(admin, "platform", ["platform-eng"])
    return cp


@pytest.fixture
def flow(ready: Any, dp: Clients, idp: FakeOidc, clock: Clock) -> Flow:
    return Flow(dp, idp, clock)
