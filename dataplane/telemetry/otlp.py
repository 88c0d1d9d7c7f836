"""OTLP/HTTP bodies: content types and encodings, decoding, identity stamping, re-encoding.

Contract:

* :func:`encoding_of` maps a ``Content-Type`` to ``"protobuf"`` (``application/x-protobuf``) or
  ``"json"`` (``application/json``, the OTLP/JSON mapping); anything else is an
  :class:`OtlpError` (400).
* :func:`decompress` undoes ``Content-Encoding: gzip`` / ``deflate`` (zlib-wrapped or raw) and
  refuses (:class:`TooLarge`) output past ``limit`` bytes without ever holding more than
  ``limit`` + one chunk: a small bomb cannot grow into a large allocation.
* :func:`decode` parses an ``Export{Metrics,Logs,Trace}ServiceRequest``. In OTLP/JSON, trace and
  span ids are hex strings (not the base64 protobuf's JSON mapping uses for bytes): they are
  converted before parsing, and unknown fields are ignored as the specification asks.
* :func:`stamp_identity` removes every identity attribute (:data:`IDENTITY_KEYS`) from every
  resource, whatever the client sent, then adds the caller's: a client cannot pose as another.
* :func:`empty_response` is the success answer: an empty ``Export*ServiceResponse`` in the
  request's encoding.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

Signal = Literal["metrics", "logs", "traces"]
Encoding = Literal["protobuf", "json"]
SIGNALS: tuple[Signal, ...] = ("metrics", "logs", "traces")
PROTOBUF_TYPE = b"application/x-protobuf"
JSON_TYPE = b"application/json"

# Resource attributes the gateway owns: always removed from what the client sent.
IDENTITY_KEYS = (
    "enduser.id",
    "tollgate.developer.id",
    "tollgate.developer.email",
    "tollgate.key.id",
    "tollgate.workspace",
)
_IDENTITY_KEYS = frozenset(IDENTITY_KEYS)

_REQUESTS: dict[str, type[Message]] = {
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "traces": trace_service_pb2.ExportTraceServiceRequest,
}
# Fields holding trace/span ids: hex in OTLP/JSON, bytes (base64 in protobuf's JSON) otherwise.
_ID_FIELDS = frozenset(
    {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
)
_CHUNK = 64 * 1024


class OtlpError(ValueError):
    """The body is not a usable OTLP export (answered 400 with this message)."""


class TooLarge(OtlpError):
    """The body, once decompressed, is larger than allowed (answered 413)."""


def encoding_of(content_type: bytes | None) -> Encoding:
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    if media == PROTOBUF_TYPE:
        return "protobuf"
    if media == JSON_TYPE:
        return "json"
    shown = media.decode("latin-1")[:80] or "none"
    raise OtlpError(
        f"Unsupported Content-Type {shown!r} for OTLP: send application/x-protobuf or "
        "application/json."
    )


def content_type(encoding: Encoding) -> bytes:
    return PROTOBUF_TYPE if encoding == "protobuf" else JSON_TYPE


def decompress(body: bytes, content_encoding: bytes | None, limit: int) -> bytes:
    """``body`` with its Content-Encoding undone; :class:`TooLarge` past ``limit`` bytes."""
    coding = (content_encoding or b"").strip().lower()
    if coding in (b"", b"identity"):
        return body
    if coding in (b"gzip", b"x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit)
    if coding == b"deflate":
        # RFC 9110 deflate is zlib-wrapped; some clients send raw deflate: accept both.
        if len(body) >= 2 and (body[0] * 256 + body[1]) % 31 == 0 and body[0] & 0x0F == 8:
            return _inflate(body, zlib.MAX_WBITS, limit)
        return _inflate(body, -zlib.MAX_WBITS, limit)
    shown = coding.decode("latin-1")[:40]
    raise OtlpError(f"Unsupported Content-Encoding {shown!r}: send gzip, deflate or none.")


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    pending = data
    try:
        while pending:
            d = zlib.decompressobj(wbits)
            chunk = d.decompress(pending, _CHUNK)
            while True:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(_too_large(limit))
                out.append(chunk)
                if not d.unconsumed_tail:
                    break
                chunk = d.decompress(d.unconsumed_tail, _CHUNK)
            if not d.eof:
                raise OtlpError("The compressed body is truncated.")
            tail = d.flush()
            size += len(tail)
            if size > limit:
                raise TooLarge(_too_large(limit))
            out.append(tail)
            pending = d.unused_data  # gzip allows several members back to back
    except zlib.error:
        raise OtlpError("The body does not decompress with its Content-Encoding.") from None
    return b"".join(out)


def _too_large(limit: int) -> str:
    return (
        f"The OTLP export is larger than this gateway accepts ({limit // (1024 * 1024)} MB "
        "decompressed); lower the exporter's batch size."
    )


def decode(signal: Signal, body: bytes, encoding: Encoding) -> Message:
    """The export request, or :class:`OtlpError` saying why the body is not one."""
    msg = _REQUESTS[signal]()
    if encoding == "protobuf":
        try:
            msg.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError):
            raise OtlpError(f"The body is not an OTLP {signal} export in protobuf.") from None
        return msg
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise OtlpError("The body is not JSON.") from None
    if not isinstance(obj, dict):
        raise OtlpError(f"The body is not an OTLP {signal} export in JSON (not an object).")
    try:
        _hex_ids_to_base64(obj)
        json_format.ParseDict(obj, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise OtlpError(f"The body is not an OTLP {signal} export in JSON: {detail}") from None
    return msg


def _hex_ids_to_base64(node: Any, depth: int = 0) -> None:
    """In place: OTLP/JSON's hex trace/span ids → the base64 protobuf's JSON parser expects."""
    if depth > 64:
        raise ValueError("the JSON nests too deeply")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise ValueError(f"{key} {value[:40]!r} is not hex") from None
            elif isinstance(value, dict | list):
                _hex_ids_to_base64(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _hex_ids_to_base64(item, depth + 1)


def resources(signal: Signal, msg: Message) -> Iterable[Any]:
    """The ResourceMetrics / ResourceLogs / ResourceSpans of an export request."""
    if signal == "metrics":
        assert isinstance(msg, metrics_service_pb2.ExportMetricsServiceRequest)
        return msg.resource_metrics
    if signal == "logs":
        assert isinstance(msg, logs_service_pb2.ExportLogsServiceRequest)
        return msg.resource_logs
    assert isinstance(msg, trace_service_pb2.ExportTraceServiceRequest)
    return msg.resource_spans


def stamp_identity(signal: Signal, msg: Message, attributes: Sequence[tuple[str, str]]) -> None:
    """Replace the identity attributes of every resource of ``msg`` with ``attributes``."""
    for item in resources(signal, msg):
        attrs = item.resource.attributes
        kept = [a for a in attrs if a.key not in _IDENTITY_KEYS]
        if len(kept) != len(attrs):
            del attrs[:]
            attrs.extend(kept)
        for key, value in attributes:
            attrs.append(
                common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))
            )


def empty_response(encoding: Encoding) -> bytes:
    """An empty Export*ServiceResponse: no bytes in protobuf, ``{}`` in JSON (all signals)."""
    return b"" if encoding == "protobuf" else b"{}"
