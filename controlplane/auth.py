"""Bearer-token authentication for every RPC, as a grpc.aio server interceptor.

Policy (by full method name):

* admin token — ``/gwapi.v1.Admin/*``, ``Telemetry/QueryUsage``, ``Telemetry/TailLogs``,
  ``Telemetry/GetLog`` (logged headers and bodies), ``Telemetry/StreamStats``,
  ``Telemetry/ListAlerts``, ``Discovery/ListDataPlanes``, and any method not listed here
  (deny by default);
* data-plane token or admin token — ``Discovery/Watch``, ``Telemetry/ReportUsage``;
* open — ``grpc.health.v1.Health/*`` and server reflection.

The token travels as ``authorization: Bearer <token>`` metadata and is compared in constant
time. A refusal is UNAUTHENTICATED with a message telling the caller what to pass. Tokens are
never logged.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

log = logging.getLogger(__name__)


class Role(enum.Enum):
    OPEN = "open"
    DATAPLANE = "dataplane"
    ADMIN = "admin"


_OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_DATAPLANE_METHODS = frozenset({"/gwapi.v1.Discovery/Watch", "/gwapi.v1.Telemetry/ReportUsage"})


def required_role(method: str) -> Role:
    if method.startswith(_OPEN_PREFIXES):
        return Role.OPEN
    if method in _DATAPLANE_METHODS:
        return Role.DATAPLANE
    return Role.ADMIN


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token from ``authorization: Bearer …``; ``None`` if absent, ``""`` if malformed."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ""
        return token.strip()
    return None


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class AuthPolicy:
    """Decides whether a token may call a method; returns a refusal message or ``None``."""

    def __init__(self, admin_token: str, dataplane_token: str) -> None:
        if not admin_token:
            raise ValueError("an admin token is required")
        self._admin = admin_token
        self._dataplane = dataplane_token or admin_token

    def check(self, method: str, token: str | None) -> str | None:
        role = required_role(method)
        if role is Role.OPEN:
            return None
        if token == "":
            return "malformed authorization metadata: expected 'authorization: Bearer <token>'"
        is_admin = token is not None and _same(token, self._admin)
        is_dataplane = token is not None and _same(token, self._dataplane)
        if role is Role.DATAPLANE:
            if is_admin or is_dataplane:
                return None
            if token is None:
                return "missing data-plane token: set TOLLGATE_DATAPLANE_TOKEN on the data plane"
            return "invalid data-plane token: check TOLLGATE_DATAPLANE_TOKEN on the data plane"
        if is_admin:
            return None
        if token is None:
            return "missing admin token: pass --token or set TOLLGATE_ADMIN_TOKEN"
        if is_dataplane:
            return "this call needs the admin token; the data-plane token only allows Watch and ReportUsage"
        return "invalid admin token: check --token or TOLLGATE_ADMIN_TOKEN"


def _refusing_handler(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    return grpc.stream_stream_rpc_method_handler(refuse, **kwargs)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, policy: AuthPolicy) -> None:
        self._policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        problem = self._policy.check(method, bearer_token(handler_call_details.invocation_metadata))
        handler = await continuation(handler_call_details)
        if problem is None or handler is None:
            return handler
        log.warning("refused %s: %s", method, problem)
        return _refusing_handler(handler, problem)
