"""Small ASGI helpers: header access and forwarding, bounded body reading, whole responses.

No framework: the data plane's routes are few and its hot path wants nothing between the server
and the relay loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from dataplane.errors import NOT_RETRYABLE, BadRequest, GatewayError, error_response_body, too_large

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Header = tuple[bytes, bytes]

JSON = b"application/json"


class ClientDisconnected(Exception):
    """The client went away before the request body was complete."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (name lower-case), or None."""
    for k, v in scope["headers"]:
        if k == name:
            return v  # type: ignore[no-any-return]
    return None


# Request headers never forwarded: hop-by-hop, the client's own credentials (the virtual key never
# goes upstream), and our own control headers. Everything else, anthropic-* above all, passes.
DROP_REQUEST = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
        b"authorization",
        b"x-api-key",
        b"accept-encoding",
        b"cookie",
    }
)

# With tracing on, the client's W3C trace context is continued, not forwarded: each attempt sends
# its own traceparent (dataplane.edge.tracing.context). With tracing off both pass through untouched.
DROP_REQUEST_TRACED = DROP_REQUEST | {b"traceparent", b"tracestate"}


def forwardable_headers(
    headers: list[Header], drop: frozenset[bytes] = DROP_REQUEST
) -> tuple[Header, ...]:
    """The client's request headers that may go upstream: all but ``drop`` and ``x-tollgate-*``."""
    return tuple((k, v) for k, v in headers if k not in drop and not k.startswith(b"x-tollgate-"))


async def read_body(receive: Receive, scope: Scope, limit: int) -> bytes:
    """Read the whole request body, refusing (413) as soon as it would pass ``limit`` bytes.

    A declared content-length over the limit is refused without keeping a single body byte; a
    chunked body is refused the moment it crosses the limit, so memory stays bounded either way.
    What remains is discarded (bounded) before the refusal is sent: see :func:`drain_body`.
    """
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest(400, "Malformed content-length header.") from None
        if size > limit:
            await drain_body(receive)
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await drain_body(receive)
                raise too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


async def drain_body(receive: Receive, max_bytes: int = 64 * 1024 * 1024) -> None:
    """Read and discard what is left of a refused body, so the client gets to read our answer.

    A client that is still uploading when the server answers and closes sees a connection reset
    instead of the 413; discarding (bounded, nothing kept) lets it finish writing and read the
    refusal. Past ``max_bytes`` we stop: the client may then see a reset, which beats reading on.
    """
    seen = 0
    while seen <= max_bytes:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[Header] = (),
    content_type: bytes = JSON,
) -> None:
    """Send a complete (non-streamed) response."""
    all_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: GatewayError, request_id: str) -> None:
    """Send a gateway refusal as an Anthropic error response with its request id."""
    body = error_response_body(error.error_type, error.message, request_id)
    await send_error_body(send, error.status, body, error.headers, request_id)


async def send_error_body(
    send: Send, status: int, body: bytes, headers: Iterable[Header], request_id: str
) -> None:
    """Send an already-rendered error body with the gateway's request-id headers."""
    all_headers = [
        (b"request-id", request_id.encode()),
        (b"x-tollgate-request-id", request_id.encode()),
        *headers,
    ]
    if status in NOT_RETRYABLE and not any(k == b"x-should-retry" for k, _ in all_headers):
        all_headers.append((b"x-should-retry", b"false"))
    await send_response(send, status, body, all_headers)
