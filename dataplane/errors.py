"""The errors the gateway answers itself: one tree of kinds, one table of Anthropic error types.

Every refusal or failure the data plane reports on its own is a :class:`GatewayError`; its class
says what happened, its ``status`` what the client is told. Code that must tell kinds apart asks
``isinstance`` against this tree, never a status number. The tree::

    GatewayError                    a refusal or failure the gateway reports itself
    ├── ClientError                 the request, as sent, cannot be served
    │   ├── BadRequest              400: a malformed body or header, too old a client
    │   │   └── BadModel            400: an unusable model id (dataplane.clienttext)
    │   ├── Unauthenticated         401: no key, an unknown, revoked or expired one; sign-in ended
    │   ├── Forbidden               403 (400 for a developer, as Claude Code asks): outside access
    │   ├── NotFound                404: no such path, door URL or model
    │   ├── MethodNotAllowed        405
    │   ├── BodyTimeout             408: the body did not arrive in time (dataplane.edge.guards)
    │   └── RequestTooLarge         413: the body is over this gateway's limit
    ├── LimitError                  429: a rate limit or a budget (dataplane.policy.limits)
    ├── Unavailable                 503: not now — no configuration yet, draining, the counter
    │                                    store unreachable, a provider's secret not received
    ├── Misconfigured               500 (503 for a key, or a workspace's developers, without a
    │                                    provider): the operator's setup, not the request, is wrong
    └── UpstreamError               no usable answer from a provider: the attempt chain moves on,
        │                           and the target's circuit breaker counts a failure
        ├── UpstreamConnectError    502: never reached it (refused, DNS, TLS, connect or pool
        │                                timeout)
        ├── UpstreamTimeout         504: reached, then silent past the read (first-byte) timeout
        ├── UpstreamProtocolError   502: the exchange broke off (disconnected, a truncated body)
        └── UpstreamAuthError       502: the provider's cloud gave no access token

:mod:`dataplane.providers.transport` maps aiohttp's and asyncio's exceptions into the
``UpstreamError`` branch, once; nothing past it sees an aiohttp exception.
:func:`error_response_body` renders any of them exactly as the Anthropic API does, so Claude Code
shows the message to the user and applies its usual retry rules (``retry-after`` in integer
seconds, ``x-should-retry``). Upstream error bodies are *not* passed through here: they are
forwarded byte for byte.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # dataplane.asgi imports this module: the alias is for the type checker
    from dataplane.asgi import Header

# status -> Anthropic error type (WIRE.md). The gateway uses nothing outside this table.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",  # the client's body did not arrive in time
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# Refusals a retry cannot fix. They carry `x-should-retry: false`, without which Claude Code
# keeps retrying (a revoked key would leave `claude -p` hanging instead of printing why).
NOT_RETRYABLE = frozenset({400, 401, 402, 403, 404, 405, 413})


def new_request_id() -> str:
    """A gateway request id: unique, URL-safe, recognisably ours (``gwreq_…``)."""
    return "gwreq_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class GatewayError(Exception):
    """A refusal or failure the gateway reports itself, as an Anthropic error."""

    status: int
    message: str
    headers: Sequence[Header] = field(default=())
    # The Anthropic error type when the status's usual one is wrong for this refusal (e.g. a
    # 503 that is a configuration problem, not an overload Claude Code should back off from).
    type_name: str = ""

    @property
    def error_type(self) -> str:
        return self.type_name or ERROR_TYPES.get(self.status, "api_error")

    def __str__(self) -> str:
        return f"{self.status} {self.error_type}: {self.message}"


# The tree (see the module docstring). Every class takes GatewayError's fields; the constructors
# below give each its status and a message that tells the user what to do.


@dataclass(frozen=True, slots=True)
class ClientError(GatewayError):
    """The request, as sent, cannot be served."""


@dataclass(frozen=True, slots=True)
class BadRequest(ClientError):
    """400: a malformed body or header, or a client older than the workspace allows."""


@dataclass(frozen=True, slots=True)
class Unauthenticated(ClientError):
    """401: no key, an unknown, revoked or expired one, or a sign-in that ended."""


@dataclass(frozen=True, slots=True)
class Forbidden(ClientError):
    """The member may not reach this target or model (403; 400 for a developer's model)."""


@dataclass(frozen=True, slots=True)
class NotFound(ClientError):
    """404: no such path, door URL or model."""


@dataclass(frozen=True, slots=True)
class MethodNotAllowed(ClientError):
    """405: the path is served, not with this method."""


@dataclass(frozen=True, slots=True)
class BodyTimeout(ClientError):
    """408: the request body did not arrive in time."""


@dataclass(frozen=True, slots=True)
class RequestTooLarge(ClientError):
    """413: the request body is larger than this gateway accepts."""


@dataclass(frozen=True, slots=True)
class LimitError(GatewayError):
    """429: a rate limit or a budget refused the request."""


@dataclass(frozen=True, slots=True)
class Unavailable(GatewayError):
    """503: this replica cannot serve it now; another, or a retry shortly, can."""


@dataclass(frozen=True, slots=True)
class Misconfigured(GatewayError):
    """The operator's setup (a provider's options or credentials, a workspace) is wrong."""


@dataclass(frozen=True, slots=True)
class UpstreamError(GatewayError):
    """No usable answer from a provider (502/504): the next attempt may get one elsewhere."""


@dataclass(frozen=True, slots=True)
class UpstreamConnectError(UpstreamError):
    """502: the provider was never reached (refused, DNS, TLS, connect or pool timeout)."""


@dataclass(frozen=True, slots=True)
class UpstreamTimeout(UpstreamError):
    """504: the provider was reached, then said nothing within the read timeout."""


@dataclass(frozen=True, slots=True)
class UpstreamProtocolError(UpstreamError):
    """502: the exchange broke off (the server disconnected, the body was cut short)."""


@dataclass(frozen=True, slots=True)
class UpstreamAuthError(UpstreamError):
    """502: the provider's cloud gave no access token (e.g. Google's token endpoint)."""


def error_response_body(error_type: str, message: str, request_id: str) -> bytes:
    """The JSON body of an Anthropic error response."""
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
    )


def error_event(error_type: str, message: str) -> bytes:
    """An SSE ``error`` event, for failures after the 200 was committed."""
    data = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"


# Convenience constructors keep messages consistent and tell the user what to do.


def bad_request(message: str) -> BadRequest:
    return BadRequest(400, message)


def unauthenticated(message: str) -> Unauthenticated:
    return Unauthenticated(401, message)


def forbidden(message: str) -> Forbidden:
    return Forbidden(403, message)


def not_found(message: str) -> NotFound:
    return NotFound(404, message)


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        413,
        f"Request body is larger than this gateway accepts ({limit // (1024 * 1024)} MB); "
        "shorten the conversation (e.g. /compact) and try again.",
    )


def answer_failed(cause: BaseException, message: str) -> UpstreamError:
    """An answer that failed while it was read (``cause``): 504 when the provider went silent,
    502 for anything else (a transport failure or a bug alike: the client may retry)."""
    if isinstance(cause, UpstreamTimeout):
        return UpstreamTimeout(504, message)
    return UpstreamProtocolError(502, message)


def unreachable_message(provider: str) -> str:
    return (
        f"The gateway could not reach provider '{provider}'. Try again shortly; "
        "if it persists, ask your platform team to check the provider's status."
    )


def timeout_message(provider: str) -> str:
    return (
        f"Provider '{provider}' did not answer in time. Try again; long prompts may need a "
        "higher timeout on the provider."
    )
