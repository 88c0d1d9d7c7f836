"""The Anthropic door: ``/v1/messages`` and ``/v1/messages/count_tokens``, pass-through both ways.

The body is parsed once, only to read ``model``, ``stream`` and ``max_tokens``; the bytes that go
upstream are the client's own.
"""

from __future__ import annotations

from typing import Any

import orjson

from dataplane.asgi import Header, Scope
from dataplane.clienttext import check_model
from dataplane.edge.doors.base import AnthropicErrors, Prepared, StreamEncoder
from dataplane.errors import bad_request
from dataplane.providers.betas import header_betas


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON ({exc}).") from None
    if not isinstance(obj, dict):
        raise bad_request("The request body must be a JSON object.")
    return obj


def max_tokens_of(obj: dict[str, Any]) -> int:
    value = obj.get("max_tokens")
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
        max_tokens=max_tokens_of(obj),
        count_only=count_only,
        headers=headers,
        betas=tuple(header_betas(headers)),
    )


class AnthropicDoor(AnthropicErrors):
    name = "anthropic"
    forwards_query = True

    def prepare(self, scope: Scope, body: bytes, headers: tuple[Header, ...]) -> Prepared:
        obj = parse_json_object(body)
        model = check_model(obj.get("model"))  # before it is recorded anywhere
        count_only = scope["path"].endswith("/count_tokens")
        return Prepared(
            body=body,
            json=obj,
            model=model,
            stream=obj.get("stream") is True and not count_only,
            max_tokens=max_tokens_of(obj),
            count_only=count_only,
            headers=headers,
            betas=tuple(header_betas(headers)),
        )

    def encoder(self) -> StreamEncoder | None:
        return None
