"""A strict fake of the control plane's side of sign-in, for data-plane tests.

A real grpc.aio server on 127.0.0.1 implementing ``gwapi.v1.SignIn`` (the device grant, the
browser step against a pretend identity provider, tokens and single-use refresh tokens),
``Discovery.Watch`` (the snapshot, pushed again whenever the test changes it) and
``Telemetry.ReportUsage`` (usage events kept for the test to read). It checks what it receives the
way the control plane does — the data-plane token on every call, the public URL the data plane
sends, the user code's shape, the browser-binding secret, the state and the identity provider's
code — and records every violation in ``violations`` (tests assert it stays empty) besides
answering an error. Access tokens are real HS256 JWTs signed with the snapshot's key.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import grpc
import jwt

from gwapi.v1 import (
    common_pb2,
    discovery_pb2,
    discovery_pb2_grpc,
    signin_pb2,
    signin_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)
from tests.dataplane.conftest import PRICES, SECRET, sha
from tests.fakes.anthropic import anthropic_at
from tests.fakes.strict import Strict, watch

DP_TOKEN = "dp-token-signin-0123456789"
KID = "k1"
SIGNING_KEY = bytes(range(32))
IDP = "https://idp.example.test"
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
DEVELOPER_ID = "dev_alice"
DEVELOPER_EMAIL = "alice@example.com"


def mint(
    sub: str | None = DEVELOPER_ID,
    key: bytes = SIGNING_KEY,
    kid: str = KID,
    iat: float | None = None,
    ttl: int = 3600,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """An access token as the control plane mints it; keyword arguments override claims, and
    a claim given as None (``sub`` too) is left out."""
    now = time.time() if iat is None else iat
    payload: dict[str, Any] = {
        "iss": "tollgate",
        "aud": "tollgate",
        "sub": sub,
        "sid": "fam_1",
        "iat": int(now),
        "exp": int(now) + ttl,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def sso_snapshot(
    upstream_url: str,
    version: str = "s1",
    *,
    enabled: bool = True,
    keys: bool = True,
    disabled: bool = False,
    tokens_not_before_ms: int = 0,
    managed_settings: str = "",
    member_provider: str = "anthropic",
    allowed_models: tuple[str, ...] = (),
    member_limits: common_pb2.Limits | None = None,
) -> discovery_pb2.Snapshot:
    """team-a with one virtual key and one signed-in developer, sign-in on, one signing key."""
    ws = common_pb2.Workspace(
        name="team-a",
        member_provider=member_provider,
        managed_settings_json=managed_settings,
        managed_settings_checksum=hashlib.sha256(managed_settings.encode()).hexdigest()[:16]
        if managed_settings
        else "",
        allowed_models=list(allowed_models),
    )
    snap = discovery_pb2.Snapshot(
        version=version,
        built_at_ms=int(time.time() * 1000),
        workspaces=[ws],
        providers=[anthropic_at(upstream_url)],
        keys=[
            discovery_pb2.SnapshotKey(
                id="key_alice",
                secret_sha256=sha(SECRET),
                name="alice-laptop",
                workspace="team-a",
                provider="anthropic",
            )
        ],
        prices=PRICES,
        sso=discovery_pb2.SsoInfo(enabled=enabled, issuer=IDP),
        developers=[
            discovery_pb2.SnapshotDeveloper(
                id=DEVELOPER_ID,
                workspace="team-a",
                email=DEVELOPER_EMAIL,
                name="Alice",
                provider=member_provider,
                disabled=disabled,
                tokens_not_before_ms=tokens_not_before_ms,
                limits=member_limits,
            )
        ],
    )
    if keys:
        snap.signing_keys.append(discovery_pb2.SigningKey(kid=KID, key=SIGNING_KEY, current=True))
    return snap


def oauth_error(error: str, status: int, description: str = "") -> signin_pb2.OAuthError:
    return signin_pb2.OAuthError(
        error=error, error_description=description or error.replace("_", " "), http_status=status
    )


@dataclass
class Grant:
    device_code: str
    user_code: str
    public_url: str
    expires_at: float
    state: str = ""
    browser_secret: str = ""
    idp_code: str = ""
    approved: bool = False
    used: bool = False


@dataclass
class FakeSignInControlPlane(
    signin_pb2_grpc.SignInServicer,
    discovery_pb2_grpc.DiscoveryServicer,
    telemetry_pb2_grpc.TelemetryServicer,
    Strict,
):
    snapshot: discovery_pb2.Snapshot
    public_url: str = ""  # what the data plane must send; "" = take the first one seen
    token: str = DP_TOKEN
    ttl_s: int = 3600
    violations: list[str] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    # Test controls: an RPC name → the gRPC status to fail it with; scripted poll answers
    # (OAuth errors) given before the real one; a CompleteBrowser answer to give instead.
    fail: dict[str, grpc.StatusCode] = field(default_factory=dict)
    poll_script: deque[signin_pb2.OAuthError] = field(default_factory=deque)
    complete_answer: signin_pb2.CompleteBrowserResponse | None = None
    start_error: signin_pb2.OAuthError | None = None
    begin_url: str = ""  # an authorization URL to answer instead of the real one
    events: list[telemetry_pb2.UsageEvent] = field(default_factory=list)
    watch_requests: list[discovery_pb2.WatchRequest] = field(default_factory=list)
    grants: dict[str, Grant] = field(default_factory=dict)  # by user code (no dash)
    refresh_tokens: dict[str, bool] = field(default_factory=dict)  # token -> used
    port: int = 0

    def __post_init__(self) -> None:
        self._changed = asyncio.Event()
        self._server: grpc.aio.Server | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        server = grpc.aio.server()
        signin_pb2_grpc.add_SignInServicer_to_server(self, server)
        discovery_pb2_grpc.add_DiscoveryServicer_to_server(self, server)
        telemetry_pb2_grpc.add_TelemetryServicer_to_server(self, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self._server = server
        watch(self)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None

    def push(self, snapshot: discovery_pb2.Snapshot) -> None:
        """Publish a new snapshot to every watching data plane."""
        self.snapshot = snapshot
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- strictness ---------------------------------------------------------------------------

    async def _enter(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.calls.append((name, request))
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("authorization") != f"Bearer {self.token}":
            self.violations.append(f"{name}: wrong or missing data-plane token")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad data-plane token")
        if name in self.fail:
            await context.abort(self.fail[name], f"{name} failed (scripted)")
        url = getattr(request, "public_url", None)
        if url is not None:
            if not self.public_url:
                self.public_url = url
            if url != self.public_url or url.endswith("/"):
                self.violations.append(f"{name}: public_url {url!r} != {self.public_url!r}")
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "wrong public_url")
        ip = getattr(request, "client_ip", None)
        if ip is not None and not ip:
            self.violations.append(f"{name}: no client_ip")

    def _token_response(self, sub: str) -> signin_pb2.TokenResponse:
        refresh = secrets.token_urlsafe(32)
        self.refresh_tokens[refresh] = False
        return signin_pb2.TokenResponse(
            access_token=mint(sub, ttl=self.ttl_s),
            token_type="Bearer",
            expires_in=self.ttl_s,
            refresh_token=refresh,
        )

    # -- SignIn -------------------------------------------------------------------------------

    async def StartDevice(self, request, context):
        await self._enter("StartDevice", request, context)
        if self.start_error is not None:
            return signin_pb2.StartDeviceResponse(error=self.start_error)
        code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
        grant = Grant(secrets.token_urlsafe(32), code, request.public_url, time.time() + 600)
        self.grants[code] = grant
        return signin_pb2.StartDeviceResponse(
            device_code=grant.device_code,
            user_code=f"{code[:4]}-{code[4:]}",
            expires_in=600,
            interval=5,
        )

    def _by_device_code(self, device_code: str) -> Grant | None:
        return next((g for g in self.grants.values() if g.device_code == device_code), None)

    async def PollDevice(self, request, context):
        await self._enter("PollDevice", request, context)
        if self.poll_script:
            return signin_pb2.TokenResponse(error=self.poll_script.popleft())
        grant = self._by_device_code(request.device_code)
        if grant is None or grant.used:
            return signin_pb2.TokenResponse(error=oauth_error("invalid_grant", 400))
        if time.time() > grant.expires_at:
            return signin_pb2.TokenResponse(error=oauth_error("expired_token", 400))
        if not grant.approved:
            return signin_pb2.TokenResponse(error=oauth_error("authorization_pending", 400))
        grant.used = True
        return self._token_response(DEVELOPER_ID)

    async def Refresh(self, request, context):
        await self._enter("Refresh", request, context)
        used = self.refresh_tokens.get(request.refresh_token)
        developer = next(d for d in self.snapshot.developers if d.id == DEVELOPER_ID)
        if used is None or used or developer.disabled:
            if used is False:
                self.refresh_tokens[request.refresh_token] = True
            return signin_pb2.TokenResponse(
                error=oauth_error("invalid_grant", 401, "Your sign-in has ended; run /login.")
            )
        self.refresh_tokens[request.refresh_token] = True
        return self._token_response(DEVELOPER_ID)

    async def BeginBrowser(self, request, context):
        await self._enter("BeginBrowser", request, context)
        code = request.user_code.upper().replace("-", "")
        if len(code) != 8 or any(c not in USER_CODE_ALPHABET for c in code):
            self.violations.append(f"BeginBrowser: malformed user code {request.user_code!r}")
        grant = self.grants.get(code)
        if grant is None:
            return signin_pb2.BeginBrowserResponse(error=oauth_error("invalid_code", 400))
        if time.time() > grant.expires_at or grant.approved:
            return signin_pb2.BeginBrowserResponse(error=oauth_error("expired_code", 400))
        grant.state = secrets.token_urlsafe(16)
        grant.browser_secret = secrets.token_urlsafe(32)
        grant.idp_code = "idp-" + secrets.token_urlsafe(8)
        query = urlencode(
            {
                "client_id": "tollgate",
                "response_type": "code",
                "redirect_uri": request.public_url + "/oauth/callback",
                "state": grant.state,
                "scope": "openid profile email offline_access",
            }
        )
        return signin_pb2.BeginBrowserResponse(
            authorization_url=self.begin_url or f"{IDP}/authorize?{query}",
            browser_secret=grant.browser_secret,
            max_age_s=int(grant.expires_at - time.time()),
        )

    def idp_code_for(self, state: str) -> str:
        """What the pretend identity provider sends back to the callback with ``state``."""
        return next(g.idp_code for g in self.grants.values() if g.state == state)

    async def CompleteBrowser(self, request, context):
        await self._enter("CompleteBrowser", request, context)
        if self.complete_answer is not None:
            return self.complete_answer
        grant = next((g for g in self.grants.values() if g.state == request.state), None)
        if grant is None or grant.approved:
            return signin_pb2.CompleteBrowserResponse(
                reason="expired", title="Sign-in expired", message="Run /login again."
            )
        if request.browser_secret != grant.browser_secret:
            return signin_pb2.CompleteBrowserResponse(
                reason="other_browser",
                title="Another browser",
                message="Finish the sign-in in the browser where you confirmed the code.",
            )
        if request.error:
            return signin_pb2.CompleteBrowserResponse(
                reason="idp_error", title="Your identity provider refused", message=request.error
            )
        if request.code != grant.idp_code:
            self.violations.append("CompleteBrowser: wrong identity-provider code")
            return signin_pb2.CompleteBrowserResponse(
                reason="invalid_id_token", title="Sign-in failed", message="bad code"
            )
        grant.approved = True
        return signin_pb2.CompleteBrowserResponse(
            ok=True, developer_email=DEVELOPER_EMAIL, developer_name="Alice", workspace="team-a"
        )

    # -- Discovery and Telemetry ------------------------------------------------------------

    async def Watch(self, request_iterator, context):
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("authorization") != f"Bearer {self.token}":
            self.violations.append("Watch: wrong or missing data-plane token")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad data-plane token")
        first = await request_iterator.__anext__()
        self.watch_requests.append(first)
        reader = asyncio.ensure_future(self._read_acks(request_iterator))
        sent = first.version_info
        try:
            while True:
                changed = self._changed
                snap = self.snapshot
                if snap.version != sent:
                    yield discovery_pb2.WatchResponse(
                        version=snap.version, nonce=secrets.token_hex(4), snapshot=snap
                    )
                    sent = snap.version
                await changed.wait()
        finally:
            reader.cancel()

    async def _read_acks(self, request_iterator: Any) -> None:
        async for request in request_iterator:
            self.watch_requests.append(request)

    async def ReportUsage(self, request, context):
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("authorization") != f"Bearer {self.token}":
            self.violations.append("ReportUsage: wrong or missing data-plane token")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad data-plane token")
        self.events.extend(request.events)
        return telemetry_pb2.ReportUsageResponse(
            acked_seq=request.last_seq, accepted=len(request.events)
        )
