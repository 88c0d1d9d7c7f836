"""A strict fake OTLP/HTTP collector, served by Hypercorn on 127.0.0.1.

Strict like a real collector behind an API gateway: a request must be ``POST
{prefix}/v1/{metrics|logs|traces}`` with ``Content-Type: application/x-protobuf`` (or
``application/json``, decoded with OTLP/JSON's hex ids) whose body parses as that signal's
``Export*ServiceRequest`` (opentelemetry-proto), and must carry every header of
``required_headers`` with its exact value (401 otherwise). Violations are answered as a collector
would (4xx) and recorded in ``violations``; good exports are recorded in ``received``, decoded.

Scripted failures: ``fail_next(n, status)`` answers the next ``n`` exports with ``status``
(recorded in ``attempts``, not ``received``); ``down`` refuses with 503 until cleared; ``delay``
holds every answer that long.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.fakes.server import LoopbackServer, read_body
from tests.fakes.strict import Strict

REQUESTS: dict[str, type[Message]] = {
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "traces": trace_service_pb2.ExportTraceServiceRequest,
}
_IDS = ("traceId", "spanId", "parentSpanId")


@dataclass
class Export:
    signal: str
    headers: dict[str, str]
    content_type: str
    message: Any  # the decoded Export*ServiceRequest
    raw: bytes

    def resource_attributes(self) -> list[dict[str, str]]:
        """Every resource's attributes (string values), in order."""
        out = []
        for item in _resources(self.signal, self.message):
            out.append({a.key: a.value.string_value for a in item.resource.attributes})
        return out


def _resources(signal: str, msg: Any) -> Any:
    return {
        "metrics": lambda: msg.resource_metrics,
        "logs": lambda: msg.resource_logs,
        "traces": lambda: msg.resource_spans,
    }[signal]()


def parse_otlp_json(signal: str, body: bytes) -> Message:
    """OTLP/JSON → the protobuf message (ids are hex in OTLP/JSON)."""

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in _IDS and isinstance(v, str):
                    node[k] = base64.b64encode(bytes.fromhex(v)).decode()
                else:
                    fix(v)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    obj = orjson.loads(body)
    fix(obj)
    msg = REQUESTS[signal]()
    json_format.ParseDict(obj, msg, ignore_unknown_fields=True)
    return msg


@dataclass
class FakeCollector(LoopbackServer, Strict):
    required_headers: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    received: list[Export] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    attempts: int = 0
    delay: float = 0.0
    down: bool = False
    _failures: list[int] = field(default_factory=list)

    def fail_next(self, n: int, status: int = 503) -> None:
        self._failures.extend([status] * n)

    def of(self, signal: str) -> list[Export]:
        return [e for e in self.received if e.signal == signal]

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Export]:
        """Wait until ``n`` exports were received; returns them."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.received) < n:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"collector received {len(self.received)} exports, expected {n}; "
                    f"violations: {self.violations}"
                )
            await asyncio.sleep(0.01)
        return self.received

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        status, problem, export = self._check(scope, headers, body)
        if problem:
            self.violations.append(problem)
        elif self.down:
            status = 503
        elif self._failures:
            status = self._failures.pop(0)
        elif export is not None:
            self.received.append(export)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/x-protobuf")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _check(
        self, scope: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> tuple[int, str, Export | None]:
        path: str = scope["path"]
        if scope["method"] != "POST":
            return 405, f"{scope['method']} {path}", None
        signal = path.removeprefix(self.prefix + "/v1/") if path.startswith(self.prefix) else ""
        if signal not in REQUESTS:
            return 404, f"unexpected path {path}", None
        for name, value in self.required_headers.items():
            if headers.get(name.lower()) != value:
                return 401, f"header {name} missing or wrong", None
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        ctype = headers.get("content-type", "").split(";")[0].strip()
        try:
            if ctype == "application/x-protobuf":
                message = REQUESTS[signal].FromString(body)
            elif ctype == "application/json":
                message = parse_otlp_json(signal, body)
            else:
                return 415, f"content-type {ctype!r}", None
        except (DecodeError, ValueError, json_format.ParseError) as exc:
            return 400, f"undecodable {signal} body: {exc}", None
        return 200, "", Export(signal, headers, ctype, message, body)
