"""What the cloud-provider adapter tests share."""

from __future__ import annotations

from typing import Any

import orjson

from dataplane.providers.base import UpstreamRequest
from dataplane.providers.betas import header_betas


def upstream_request(
    body: dict[str, Any], path: str, headers: tuple[tuple[bytes, bytes], ...]
) -> UpstreamRequest:
    """The request the proxy hands a provider for the Messages API ``body`` sent to ``path``
    with ``?beta=true``: streamed when the body asks for it, except for token counting."""
    return UpstreamRequest(
        path=path,
        query=b"beta=true",
        headers=headers,
        body=orjson.dumps(body),
        model=str(body["model"]),
        stream=body.get("stream") is True and not path.endswith("/count_tokens"),
        request_id="gwreq_test",
        json=body,
        betas=tuple(header_betas(headers)),
        max_tokens=body["max_tokens"] if type(body.get("max_tokens")) is int else 0,
    )
