"""The Bedrock door: clients configured for Amazon Bedrock (``CLAUDE_CODE_USE_BEDROCK=1``).

Routes (the model id is URL-quoted and may contain ``%2F``: parsed from the *raw* path)::

    POST /bedrock/model/{modelId}/invoke-with-response-stream
    POST /bedrock/model/{modelId}/invoke
    GET  /bedrock/inference-profiles            (see dataplane.edge.app; the AWS SDK sends no key)

The Bedrock body (no ``model``/``stream``, ``anthropic_version``, an ``anthropic_beta`` array) is
rewritten to the canonical Anthropic request, so any provider can serve it; the answer goes back
as the AWS event stream (``application/vnd.amazon.eventstream``), one ``chunk`` frame per
Anthropic event, and errors carry a top-level ``message`` plus ``x-amzn-errortype`` as Bedrock's do.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote

import orjson

from dataplane.asgi import Header, Scope
from dataplane.clienttext import check_model
from dataplane.codecs.eventstream import encode_message
from dataplane.codecs.sse import SSEEvent
from dataplane.edge.doors.anthropic import rewritten
from dataplane.edge.doors.base import Prepared
from dataplane.edge.doors.body import parse_object
from dataplane.errors import ERROR_TYPES, bad_request, not_found
from dataplane.metering.pricing import normalize_model
from dataplane.providers.betas import header_betas

PREFIX = b"/bedrock/model/"
EVENTSTREAM = b"application/vnd.amazon.eventstream"

# Anthropic error type -> the Bedrock exception a Bedrock client expects for it.
_EXCEPTIONS = {
    "invalid_request_error": "ValidationException",
    "request_too_large": "ValidationException",
    "authentication_error": "AccessDeniedException",
    "permission_error": "AccessDeniedException",
    "not_found_error": "ResourceNotFoundException",
    "rate_limit_error": "ThrottlingException",
    "timeout_error": "ModelTimeoutException",
    "overloaded_error": "ServiceUnavailableException",
    "api_error": "InternalServerException",
    "billing_error": "AccessDeniedException",
}
# In-stream exceptions (lowerCamelCase on the wire). Only these four make the Anthropic Bedrock
# SDK raise; others (modelTimeoutException, serviceUnavailableException) it drops silently, and
# the answer would just stop. So every failure maps onto one the client will surface.
_STREAM_EXCEPTIONS = {
    "rate_limit_error": "throttlingException",
    "invalid_request_error": "validationException",
    "request_too_large": "validationException",
    "api_error": "modelStreamErrorException",
}
_CHUNK_HEADERS = {
    ":event-type": "chunk",
    ":content-type": "application/json",
    ":message-type": "event",
}


def exception_name(error_type: str) -> str:
    return _EXCEPTIONS.get(error_type, "InternalServerException")


def merge_betas(headers: tuple[Header, ...], extra: list[str]) -> tuple[Header, ...]:
    """One ``anthropic-beta`` header holding the header's values and the body's, in order."""
    betas = header_betas(headers)
    rest = [(k, v) for k, v in headers if k != b"anthropic-beta"]
    for beta in extra:
        if beta not in betas:
            betas.append(beta)
    if not any(k == b"anthropic-version" for k, _ in rest):
        rest.append((b"anthropic-version", b"2023-06-01"))
    if betas:
        rest.append((b"anthropic-beta", ",".join(dict.fromkeys(betas)).encode()))
    return tuple(rest)


class BedrockEncoder:
    """Anthropic SSE events -> AWS event-stream frames, as Bedrock's InvokeModelWithResponseStream."""

    content_type = EVENTSTREAM

    def encode(self, events: list[SSEEvent]) -> bytes:
        out = bytearray()
        for event in events:
            if event.event == "error":
                etype, message = _error_fields(event.data.encode())
                out += self.error(etype, message)
                continue
            payload = b'{"bytes":"' + base64.b64encode(event.data.encode()) + b'"}'
            out += encode_message(_CHUNK_HEADERS, payload)
        return bytes(out)

    def error(self, error_type: str, message: str) -> bytes:
        headers = {
            ":exception-type": _STREAM_EXCEPTIONS.get(error_type, "internalServerException"),
            ":content-type": "application/json",
            ":message-type": "exception",
        }
        return encode_message(headers, orjson.dumps({"message": message}))


def _error_fields(body: bytes) -> tuple[str, str]:
    try:
        obj = orjson.loads(body)
        err = obj.get("error", {}) if isinstance(obj, dict) else {}
        return str(err.get("type", "api_error")), str(err.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return "api_error", body[:500].decode("utf-8", "replace")


class BedrockDoor:
    name = "bedrock"
    forwards_query = False

    def prepare(self, scope: Scope, body: bytes, headers: tuple[Header, ...]) -> Prepared:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        raw = raw.split(b"?", 1)[0]
        model_id, _, action = raw[len(PREFIX) :].rpartition(b"/")
        if action not in (b"invoke", b"invoke-with-response-stream") or not model_id:
            raise not_found(
                f"Not found: {scope['path']}. Bedrock clients use "
                "/bedrock/model/{modelId}/invoke or /invoke-with-response-stream."
            )
        bedrock_id = check_model(unquote(model_id.decode("latin-1")), "modelId")
        model = normalize_model(bedrock_id)
        if not model.startswith("claude-"):
            raise not_found(
                f"Model '{bedrock_id}' is not a Claude model this gateway can route. Use an "
                "Anthropic model id such as us.anthropic.claude-sonnet-4-5-20250929-v1:0."
            )
        obj = parse_object(body)
        obj.pop("anthropic_version", None)
        betas = obj.pop("anthropic_beta", None) or []
        if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
            raise bad_request("anthropic_beta must be an array of strings.")
        stream = action == b"invoke-with-response-stream"
        obj["model"] = model
        if stream:
            obj["stream"] = True
        else:
            obj.pop("stream", None)
        return rewritten(obj, model, stream, False, merge_betas(headers, betas))

    def encoder(self) -> BedrockEncoder:
        return BedrockEncoder()

    def error_body(
        self, status: int, error_type: str, message: str, request_id: str
    ) -> tuple[bytes, list[Header]]:
        body = orjson.dumps(
            {
                "message": message,
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": request_id,
            }
        )
        return body, [
            (b"x-amzn-errortype", exception_name(error_type).encode()),
            (b"x-amzn-requestid", request_id.encode()),
        ]

    def upstream_error(self, status: int, body: bytes) -> tuple[bytes, list[Header]]:
        etype, message = _error_fields(body)
        if not message:
            etype = ERROR_TYPES.get(status, "api_error")
            message = body[:500].decode("utf-8", "replace")
        return self.error_body(status, etype, message, "")[0], [
            (b"x-amzn-errortype", exception_name(etype).encode())
        ]
