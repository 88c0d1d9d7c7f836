"""The Anthropic door: ``/v1/messages`` and ``/v1/messages/count_tokens``, pass-through both ways.

Only ``model``, ``stream`` and ``max_tokens`` are read from the body (:func:`read_head`); the rest
is parsed only if something downstream reads it (:class:`LazyObject`); the bytes that go upstream
are the client's own.
"""

from __future__ import annotations

from typing import Any

import orjson

from dataplane.asgi import Header, Scope
from dataplane.clienttext import check_model
from dataplane.edge.doors.base import AnthropicErrors, Prepared, StreamEncoder
from dataplane.edge.doors.body import LazyObject, read_head
from dataplane.providers.betas import header_betas


def max_tokens_count(value: object) -> int:
    """A body's ``max_tokens`` value as the request path uses it: the integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def rewritten(
    obj: dict[str, Any], model: str, stream: bool, count_only: bool, headers: tuple[Header, ...]
) -> Prepared:
    """The Prepared request of a door that rewrites the client's body (Bedrock, Vertex): ``obj``,
    already in Anthropic format, is what goes upstream, serialised again."""
    return Prepared(
        body=orjson.dumps(obj),
        json=obj,
        model=model,
        stream=stream,
        max_tokens=max_tokens_count(obj.get("max_tokens")),
        count_only=count_only,
        headers=headers,
        betas=tuple(header_betas(headers)),
    )


class AnthropicDoor(AnthropicErrors):
    name = "anthropic"
    forwards_query = True

    def prepare(self, scope: Scope, body: bytes, headers: tuple[Header, ...]) -> Prepared:
        head = read_head(body)
        model = check_model(head.model)  # before it is recorded anywhere
        count_only = scope["path"].endswith("/count_tokens")
        return Prepared(
            body=body,
            json=LazyObject(body),
            model=model,
            stream=head.stream is True and not count_only,
            max_tokens=max_tokens_count(head.max_tokens),
            count_only=count_only,
            headers=headers,
            betas=tuple(header_betas(headers)),
        )

    def encoder(self) -> StreamEncoder | None:
        return None
