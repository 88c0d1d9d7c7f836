"""Anthropic-shaped errors: the one table from gateway refusals to HTTP status and error type.

Every refusal the data plane makes is a :class:`GatewayError`; :func:`error_response_body`
renders it exactly as the Anthropic API does, so Claude Code shows the message to the user and
applies its usual retry rules (``retry-after`` in integer seconds, ``x-should-retry``).
Upstream error bodies are *not* passed through here: they are forwarded byte for byte.
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


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, message)


def unauthenticated(message: str) -> GatewayError:
    return GatewayError(401, message)


def forbidden(message: str) -> GatewayError:
    return GatewayError(403, message)


def not_found(message: str) -> GatewayError:
    return GatewayError(404, message)


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"Request body is larger than this gateway accepts ({limit // (1024 * 1024)} MB); "
        "shorten the conversation (e.g. /compact) and try again.",
    )


def upstream_unreachable(provider: str) -> GatewayError:
    return GatewayError(
        502,
        f"The gateway could not reach provider '{provider}'. Try again shortly; "
        "if it persists, ask your platform team to check the provider's status.",
    )


def upstream_timeout(provider: str) -> GatewayError:
    return GatewayError(
        504,
        f"Provider '{provider}' did not answer in time. Try again; long prompts may need a "
        "higher timeout on the provider.",
    )
