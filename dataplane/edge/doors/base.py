"""The door interface: canonical request in, client-format answer out.

Contract: :meth:`Door.prepare` receives the raw body (already size-checked) and the ASGI scope,
and returns a :class:`Prepared` request in Anthropic format or raises ``GatewayError`` (400 for
malformed input). :meth:`Door.encoder` returns ``None`` when the client reads Anthropic SSE (the
relay then passes upstream bytes through untouched) or a :class:`StreamEncoder` that re-frames
each decoded event. :meth:`Door.error_body` renders a refusal the way this client parses errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dataplane.asgi import Header, Scope
from dataplane.codecs.sse import SSEEvent
from dataplane.errors import error_response_body


@dataclass(frozen=True, slots=True)
class Prepared:
    """An Anthropic-format request, ready for any provider adapter."""

    body: bytes  # the client's bytes for the Anthropic door; a canonical rewrite otherwise
    # The same body, parsed once: by the Anthropic door only when first read (doors.body).
    json: Mapping[str, Any]
    model: str
    stream: bool
    max_tokens: int
    count_only: bool
    headers: tuple[Header, ...]  # forwardable client headers (betas normalised into the header)
    # The request's ``anthropic-beta`` values, read once here from ``headers`` (in order, as
    # sent): the cache key, the price and the adapters all use these, never the headers again.
    betas: tuple[str, ...]


class StreamEncoder(Protocol):
    content_type: bytes

    def encode(self, events: list[SSEEvent]) -> bytes:
        """Client-format bytes for decoded Anthropic stream events (may be empty)."""
        ...

    def error(self, error_type: str, message: str) -> bytes:
        """A terminal in-stream error in the client's format."""
        ...


class Door(Protocol):
    """A client wire format. What sets one door apart is declared here, as attributes and
    methods, so that nothing downstream asks which door it is."""

    name: str  # the door's identity in logs and cache keys; never compared to decide anything
    # Whether the client's query string means anything upstream: only an Anthropic-format
    # client's does (Bedrock and Vertex clients put everything in the path and body).
    forwards_query: bool

    def prepare(self, scope: Scope, body: bytes, headers: tuple[Header, ...]) -> Prepared: ...

    def encoder(self) -> StreamEncoder | None: ...

    def error_body(
        self, status: int, error_type: str, message: str, request_id: str
    ) -> tuple[bytes, list[Header]]: ...

    def upstream_error(self, status: int, body: bytes) -> tuple[bytes, list[Header]]:
        """An upstream (Anthropic-shaped) error body, as this client expects it."""
        ...


class AnthropicErrors:
    """Error rendering for clients that speak the Anthropic API (Anthropic and Vertex doors)."""

    def error_body(
        self, status: int, error_type: str, message: str, request_id: str
    ) -> tuple[bytes, list[Header]]:
        return error_response_body(error_type, message, request_id), []

    def upstream_error(self, status: int, body: bytes) -> tuple[bytes, list[Header]]:
        return body, []  # forwarded byte for byte: Claude Code matches on the wording
