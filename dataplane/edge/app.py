"""The data plane's ASGI application: one route table, no framework.

Each row of the table (:func:`route_table`) says, for a path, which methods it serves, through
which door's format every refusal on it goes, whether it is authenticated, and what serves it;
dispatch (:class:`RouteTable`), :class:`dataplane.policy.auth.AuthMiddleware` and
:class:`dataplane.edge.guards.DrainGate` all read that one row.

``HEAD /`` and ``GET /`` answer 200 at once (Claude Code's connectivity probe); ``/healthz``
reports whether this replica can serve (it has a snapshot and is not draining). The three front
doors — Anthropic ``/v1/messages``, Bedrock ``/bedrock/model/…``, Vertex ``/vertex/v1/…`` — are
authenticated and share one :class:`ApiHandler` code path; so are ``/v1/models``,
``/managed/settings``, ``/v1/tollgate/whoami`` (``gwctl doctor``'s view of the caller,
:mod:`dataplane.edge.whoami`), the OTLP paths and every other path under ``/v1/``. The sign-in
endpoints (:mod:`dataplane.edge.signin`) and ``GET /bedrock/inference-profiles`` are not.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from dataplane.asgi import ASGIApp, Receive, Scope, Send, send_error_body, send_response
from dataplane.edge.attempts import Attempts
from dataplane.edge.doors.anthropic import AnthropicDoor
from dataplane.edge.doors.base import Door
from dataplane.edge.doors.bedrock import BedrockDoor
from dataplane.edge.doors.vertex import VertexDoor
from dataplane.edge.guards import BodyDeadline, DrainGate
from dataplane.edge.managed import PATH as MANAGED_SETTINGS
from dataplane.edge.managed import send_managed_settings
from dataplane.edge.metrics import Metrics
from dataplane.edge.proxy import ApiHandler
from dataplane.edge.signin.routes import PATHS as SIGNIN_PATHS
from dataplane.edge.signin.routes import SignInRoutes
from dataplane.edge.whoami import PATH as WHOAMI
from dataplane.edge.whoami import Whoami
from dataplane.errors import GatewayError, MethodNotAllowed, new_request_id, not_found
from dataplane.metering.record import RequestRecord
from dataplane.policy.auth import (
    PRINCIPAL,
    REQUEST_ID,
    AuthMiddleware,
    Principal,
    authenticate,
    extract_secret,
)
from dataplane.policy.breaker import CircuitBreaker
from dataplane.policy.cache import CacheBackend
from dataplane.policy.limits import Limiter
from dataplane.policy.routing import Router
from dataplane.policy.runtime import Runtime, SnapshotHolder
from dataplane.policy.tokens import TokenVerifier
from gwcommon.prometheus import CONTENT_TYPE

if TYPE_CHECKING:  # imported only when tracing is on (dataplane.process.server)
    from dataplane.edge.tracing.spans import Tracer

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
BEDROCK_MODEL = "/bedrock/model/"
INFERENCE_PROFILES = "/bedrock/inference-profiles"
VERTEX_PREFIX = "/vertex/v1/"
OTLP_PATHS = frozenset({"/v1/metrics", "/v1/logs", "/v1/traces"})

ANTHROPIC = AnthropicDoor()
BEDROCK = BedrockDoor()
VERTEX = VertexDoor()
POST = frozenset({"POST"})
GET = frozenset({"GET"})
ANY: frozenset[str] = frozenset()


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


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the route table: which requests it takes, and how every answer on it is shaped.

    ``path`` is exact, or a prefix when ``prefix``. A method outside ``methods`` is answered
    ``wrong_method`` (404, or 405 where clients are told which method to use); empty ``methods``
    leave every method to the handler. ``door`` is the wire format of every refusal made on the
    path (authentication, draining, 404/405). ``protected`` puts the path behind
    :class:`dataplane.policy.auth.AuthMiddleware` and the :class:`dataplane.edge.guards.DrainGate`.
    ``handler`` None claims the path without serving it: authenticated (when protected), then 404.
    """

    path: str
    methods: frozenset[str]
    door: Door
    protected: bool
    handler: ASGIApp | None
    prefix: bool = False
    wrong_method: int = 404


class RouteTable:
    """The data plane's routes, and the ASGI app that dispatches on them.

    A path finds its exact row first, then the first prefix row that matches. Dispatch, the
    protection of a path and the format of its refusals are all read from that one row.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._exact: dict[str, Route] = {}
        for route in self.routes:
            if not route.prefix:
                if route.path in self._exact:
                    raise ValueError(f"two routes for {route.path}")
                self._exact[route.path] = route
        self._prefixes = tuple(r for r in self.routes if r.prefix)

    def find(self, path: str) -> Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for route in self._prefixes:
            if path.startswith(route.path):
                return route
        return None

    def protected_door(self, path: str) -> Door | None:
        """The door whose format refusals use on a protected path; None for an open path."""
        route = self.find(path)
        return route.door if route is not None and route.protected else None

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning the handler's awaitable: dispatch adds no frame to the
        # request's coroutine chain, which every streamed chunk resumes.
        if scope["type"] == "lifespan":
            return _lifespan(receive, send)
        if scope["type"] != "http":
            return _ignored()
        path: str = scope["path"]
        method: str = scope["method"]
        route = self.find(path)
        if route is None or route.handler is None:
            door = route.door if route is not None else ANTHROPIC
            return _refuse(scope, send, door, _not_found(method, path))
        if route.methods and method not in route.methods:
            err = (
                MethodNotAllowed(405, f"Use {' or '.join(sorted(route.methods))} for {path}.")
                if route.wrong_method == 405
                else _not_found(method, path)
            )
            return _refuse(scope, send, route.door, err)
        return route.handler(scope, receive, send)


async def _ignored() -> None:
    """What a scope type this app does not serve (websocket) gets: nothing."""


def _not_found(method: str, path: str) -> GatewayError:
    return not_found(
        f"Not found: {method} {path}. This gateway serves the Anthropic Messages API at "
        "/v1/messages."
    )


async def _refuse(scope: Scope, send: Send, door: Door, err: GatewayError) -> None:
    request_id = scope.get(REQUEST_ID) or new_request_id()
    body, more = door.error_body(err.status, err.error_type, err.message, request_id)
    await send_error_body(send, err.status, body, [*err.headers, *more], request_id)


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


def route_table(
    messages: Callable[[Door], ASGIApp],
    health: Health,
    tokens: TokenVerifier,
    whoami: ASGIApp,
    metrics: Metrics | None = None,
    signin: ASGIApp | None = None,
    otlp: ASGIApp | None = None,
) -> RouteTable:
    """Every route the data plane serves; ``messages(door)`` serves one door's API calls.

    Without ``metrics``, ``signin`` or ``otlp`` their paths are not served (404; the OTLP paths
    after authentication, like any other path under ``/v1/``).
    """

    async def profiles(scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(send, 200, inference_profiles(health.holder.runtime, scope, tokens))

    async def root(scope: Scope, receive: Receive, send: Send) -> None:
        head = scope["method"] == "HEAD"
        await send_response(send, 200, b"" if head else b'{"service":"tollgate"}')

    async def healthz(scope: Scope, receive: Receive, send: Send) -> None:
        status, body = health.report()
        await send_response(send, status, body)

    async def models(scope: Scope, receive: Receive, send: Send) -> None:
        limit = _query_int(scope, b"limit", 1000)
        await send_response(send, 200, list_models(scope[PRINCIPAL], limit))

    async def managed(scope: Scope, receive: Receive, send: Send) -> None:
        await send_managed_settings(scope, send, scope.get(REQUEST_ID) or new_request_id())

    anthropic = messages(ANTHROPIC)
    routes = [
        Route(MESSAGES, POST, ANTHROPIC, True, anthropic, wrong_method=405),
        Route(COUNT_TOKENS, POST, ANTHROPIC, True, anthropic, wrong_method=405),
        Route(BEDROCK_MODEL, POST, BEDROCK, True, messages(BEDROCK), prefix=True),
        Route(VERTEX_PREFIX, POST, VERTEX, True, messages(VERTEX), prefix=True),
        Route(INFERENCE_PROFILES, GET, BEDROCK, False, profiles),  # the AWS SDK sends no key
        Route("/", frozenset({"GET", "HEAD"}), ANTHROPIC, False, root),
        Route("/healthz", ANY, ANTHROPIC, False, healthz),
        Route("/v1/models", GET, ANTHROPIC, True, models),
        Route(WHOAMI, GET, ANTHROPIC, True, whoami),
        Route(MANAGED_SETTINGS, GET, ANTHROPIC, True, managed),
        # Every other path under /v1/ is the API's: authenticated, then 404.
        Route("/v1/", ANY, ANTHROPIC, True, None, prefix=True),
    ]
    if metrics is not None:
        registry = metrics

        async def prometheus(scope: Scope, receive: Receive, send: Send) -> None:
            # Looked up per scrape: a worker of --workers N replaces `scrape` after the app is
            # built (MetricsPeers.start), to gather every worker's samples.
            await send_response(send, 200, await registry.scrape(), content_type=CONTENT_TYPE)

        routes.append(Route("/metrics", GET, ANTHROPIC, False, prometheus))
    if otlp is not None:  # the handler answers every method (405 but for POST)
        routes += [Route(path, ANY, ANTHROPIC, True, otlp) for path in sorted(OTLP_PATHS)]
    if signin is not None:  # unauthenticated: this is where a developer gets a token
        routes += [Route(path, ANY, ANTHROPIC, False, signin) for path in sorted(SIGNIN_PATHS)]
    return RouteTable(routes)


def build_app(
    holder: SnapshotHolder,
    router: Router,
    breaker: CircuitBreaker,
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
    ``tracer``, every API request is traced (:mod:`dataplane.edge.tracing`).

    While ``health.draining``, API requests are refused with a 503 (see :mod:`dataplane.edge.guards`);
    ``body_timeout_s`` > 0 bounds how long a request body may take to arrive. ``signin`` serves
    the sign-in endpoints (without it they are 404); signed-in developers' bearer tokens are
    accepted either way when the snapshot carries the keys.
    """
    if metrics is not None:
        sink = metrics.sink(sink)
    tokens = TokenVerifier(on_refuse=metrics.signin.bearer_refused if metrics is not None else None)

    attempts = Attempts(breaker)

    def handler(door: Door) -> ApiHandler:
        return ApiHandler(
            router, attempts, sink, dataplane_id, max_body, door, limiter, cache, tracer
        )

    routes = route_table(
        handler,
        health,
        tokens,
        Whoami(router, breaker, limiter, dataplane_id),
        metrics,
        signin,
        otlp,
    )
    app = AuthMiddleware(
        routes,
        holder,
        protects=routes.protected_door,
        on_refuse=metrics.auth_refused if metrics is not None else None,
        tokens=tokens,
    )
    return DrainGate(
        BodyDeadline(app, body_timeout_s), lambda: health.draining, routes.protected_door
    )
