"""The data plane's ASGI application: a handful of routes, no framework.

``HEAD /`` and ``GET /`` answer 200 at once (Claude Code's connectivity probe); ``/healthz``
reports whether this replica can serve (it has a snapshot and is not draining). The three front
doors — Anthropic ``/v1/messages``, Bedrock ``/bedrock/model/…``, Vertex ``/vertex/v1/…`` — sit
behind :class:`dataplane.auth.AuthMiddleware` and share one :class:`ApiHandler` code path;
so do ``/v1/models``, ``/managed/settings`` and ``/v1/tollgate/whoami`` (``gwctl doctor``'s view of
the caller, :mod:`dataplane.whoami`). The sign-in endpoints
(:mod:`dataplane.signin`) are unauthenticated.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from dataplane.asgi import ASGIApp, Receive, Scope, Send, send_error, send_response
from dataplane.attempts import Attempts
from dataplane.auth import (
    PRINCIPAL,
    REQUEST_ID,
    AuthMiddleware,
    Principal,
    authenticate,
    extract_secret,
)
from dataplane.cache import CacheBackend
from dataplane.doors.anthropic import AnthropicDoor
from dataplane.doors.base import Door
from dataplane.doors.bedrock import BedrockDoor
from dataplane.doors.vertex import VertexDoor
from dataplane.errors import GatewayError, new_request_id, not_found
from dataplane.guards import BodyDeadline, DrainGate
from dataplane.limits import Limiter
from dataplane.managed import PATH as MANAGED_SETTINGS
from dataplane.managed import send_managed_settings
from dataplane.metrics import Metrics
from dataplane.proxy import ApiHandler
from dataplane.record import RequestRecord
from dataplane.routing import Router
from dataplane.runtime import Runtime, SnapshotHolder
from dataplane.signin.routes import SignInRoutes
from dataplane.tokens import TokenVerifier
from dataplane.whoami import PATH as WHOAMI
from dataplane.whoami import Whoami
from gwcommon.prometheus import CONTENT_TYPE

if TYPE_CHECKING:  # imported only when tracing is on (dataplane.server)
    from dataplane.tracing.spans import Tracer

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
BEDROCK_MODEL = "/bedrock/model/"
VERTEX = "/vertex/v1/"
OTLP_PATHS = frozenset({"/v1/metrics", "/v1/logs", "/v1/traces"})


class Health:
    """Readiness: a snapshot to serve from, and not shutting down."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder
        self.draining = False

    def report(self) -> tuple[int, bytes]:
        snapshot = self.holder.current
        ok = snapshot is not None and not self.draining
        body = {
            "status": "ok" if ok else ("draining" if self.draining else "no-snapshot"),
            "snapshot_version": snapshot.version if snapshot else None,
        }
        return (200 if ok else 503), orjson.dumps(body)


def list_models(principal: Principal, limit: int) -> bytes:
    """The models this key may use, in the Anthropic ``/v1/models`` shape.

    Ids come from the gateway's price table (every model it can meter), filtered by the key's
    and its workspace's allow-lists; the newest first, as Anthropic lists them.
    """
    ids = [e.model_prefix for e in principal.snapshot.prices.entries]
    ids = [m for m in ids if principal.allows_model(m)]
    ids = sorted(set(ids), reverse=True)[:limit]
    data = [
        {
            "type": "model",
            "id": m,
            "display_name": m.replace("claude-", "Claude ").replace("-", " ").title(),
            "created_at": "2025-01-01T00:00:00Z",
        }
        for m in ids
    ]
    return orjson.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
        }
    )


def inference_profiles(
    runtime: Runtime | None, scope: Scope, tokens: TokenVerifier | None = None
) -> bytes:
    """``GET /bedrock/inference-profiles``: the Claude models this gateway can meter, as Bedrock
    system-defined inference profiles (``us.``/``global.`` ids).

    Claude Code's AWS SDK sends this call unsigned and without the virtual key: then the answer is
    every model the gateway meters (it only helps the client pick ids; every invoke is authorised
    on its own). A client that does send a valid virtual key gets only what that key (and its
    workspace) may use.
    """
    models = (
        sorted({e.model_prefix for e in runtime.prices.entries}, reverse=True) if runtime else []
    )
    secret = extract_secret(scope)
    if runtime is not None and secret:
        with contextlib.suppress(GatewayError):
            principal = authenticate(runtime, secret, int(time.time() * 1000), tokens)
            models = [m for m in models if principal.allows_model(m)]
    summaries = []
    for model in models:
        for geo in ("us", "global"):
            profile = f"{geo}.anthropic.{model}"
            summaries.append(
                {
                    "inferenceProfileName": f"{geo.upper()} {model}",
                    "inferenceProfileId": profile,
                    "inferenceProfileArn": f"arn:aws:bedrock:us-east-1::inference-profile/{profile}",
                    "status": "ACTIVE",
                    "type": "SYSTEM_DEFINED",
                    "models": [
                        {
                            "modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/anthropic.{model}"
                        }
                    ],
                }
            )
    return orjson.dumps({"inferenceProfileSummaries": summaries})


class Routes:
    """Dispatch by method and path."""

    def __init__(
        self,
        messages: ApiHandler,
        bedrock: ApiHandler,
        vertex: ApiHandler,
        health: Health,
        metrics: Metrics | None = None,
        signin: SignInRoutes | None = None,
        tokens: TokenVerifier | None = None,
        otlp: ASGIApp | None = None,
        whoami: ASGIApp | None = None,
    ) -> None:
        self.messages = messages
        self.bedrock = bedrock
        self.vertex = vertex
        self.health = health
        self.metrics = metrics
        self.signin = signin
        self.tokens = tokens
        self.otlp = otlp  # Claude Code's OTLP telemetry (dataplane.telemetry)
        self.whoami = whoami  # gwctl doctor's view of the caller (dataplane.whoami)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path in (MESSAGES, COUNT_TOKENS):
            if method != "POST":
                await self._error(scope, send, GatewayError(405, f"Use POST for {path}."))
                return
            await self.messages(scope, receive, send)
        elif path.startswith(BEDROCK_MODEL) and method == "POST":
            await self.bedrock(scope, receive, send)
        elif path.startswith(VERTEX) and method == "POST":
            await self.vertex(scope, receive, send)
        elif path == "/bedrock/inference-profiles" and method == "GET":
            profiles = inference_profiles(self.health.holder.runtime, scope, self.tokens)
            await send_response(send, 200, profiles)
        elif path == "/" and method in ("GET", "HEAD"):
            await send_response(send, 200, b"" if method == "HEAD" else b'{"service":"tollgate"}')
        elif path == "/healthz":
            status, body = self.health.report()
            await send_response(send, status, body)
        elif path == "/metrics" and method == "GET" and self.metrics is not None:
            await send_response(send, 200, await self.metrics.scrape(), content_type=CONTENT_TYPE)
        elif path in OTLP_PATHS and self.otlp is not None:
            await self.otlp(scope, receive, send)
        elif path == "/v1/models" and method == "GET":
            limit = _query_int(scope, b"limit", 1000)
            await send_response(send, 200, list_models(scope[PRINCIPAL], limit))
        elif path == WHOAMI and method == "GET" and self.whoami is not None:
            await self.whoami(scope, receive, send)
        elif path == MANAGED_SETTINGS and method == "GET":
            await send_managed_settings(scope, send, scope.get(REQUEST_ID) or new_request_id())
        elif self.signin is not None and self.signin.handles(path):
            await self.signin(scope, receive, send)
        else:
            await self._error(
                scope,
                send,
                not_found(
                    f"Not found: {method} {path}. This gateway serves the "
                    "Anthropic Messages API at /v1/messages."
                ),
            )

    async def _error(self, scope: Scope, send: Send, err: GatewayError) -> None:
        await send_error(send, err, scope.get(REQUEST_ID) or new_request_id())


def _query_int(scope: Scope, name: bytes, default: int) -> int:
    for part in scope.get("query_string", b"").split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name and value.isdigit():
            return max(1, min(int(value), 1000))
    return default


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def door_for(path: str) -> Door:
    """The door whose error format a refusal on ``path`` must use."""
    if path.startswith("/bedrock/"):
        return BedrockDoor()
    if path.startswith("/vertex/"):
        return VertexDoor()
    return AnthropicDoor()


def build_app(
    holder: SnapshotHolder,
    router: Router,
    sink: Callable[[RequestRecord], None],
    dataplane_id: str,
    max_body: int,
    health: Health,
    limiter: Limiter,
    cache: CacheBackend,
    metrics: Metrics | None = None,
    body_timeout_s: float = 0.0,
    signin: SignInRoutes | None = None,
    otlp: ASGIApp | None = None,
    tracer: Tracer | None = None,
) -> ASGIApp:
    """The app; with ``metrics``, every finished request is observed and ``/metrics`` served;
    with ``otlp``, ``/v1/{metrics,logs,traces}`` take OTLP telemetry (behind the auth); with
    ``tracer``, every API request is traced (:mod:`dataplane.tracing`).

    While ``health.draining``, API requests are refused with a 503 (see :mod:`dataplane.guards`);
    ``body_timeout_s`` > 0 bounds how long a request body may take to arrive. ``signin`` serves
    the sign-in endpoints (without it they are 404); signed-in developers' bearer tokens are
    accepted either way when the snapshot carries the keys.
    """
    if metrics is not None:
        sink = metrics.sink(sink)
    tokens = TokenVerifier(on_refuse=metrics.signin.bearer_refused if metrics is not None else None)

    attempts = Attempts(router.breaker)

    def handler(door: Door) -> ApiHandler:
        return ApiHandler(
            router, attempts, sink, dataplane_id, max_body, door, limiter, cache, tracer
        )

    routes = Routes(
        handler(AnthropicDoor()),
        handler(BedrockDoor()),
        handler(VertexDoor()),
        health,
        metrics,
        signin,
        tokens,
        otlp,
        Whoami(router, limiter, dataplane_id),
    )
    protected = ("/v1/", BEDROCK_MODEL, VERTEX, MANAGED_SETTINGS)
    app = AuthMiddleware(
        routes,
        holder,
        protected=protected,
        errors_for=door_for,
        on_refuse=metrics.auth_refused if metrics is not None else None,
        tokens=tokens,
    )
    return DrainGate(
        BodyDeadline(app, body_timeout_s), lambda: health.draining, protected, door_for
    )
