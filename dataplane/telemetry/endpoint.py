"""``POST /v1/metrics``, ``/v1/logs``, ``/v1/traces``: one OTLP/HTTP export, answered fast.

Behind :class:`dataplane.policy.auth.AuthMiddleware` (the principal is in the scope). Steps:

1. The body is read from the ASGI stream, with or without Content-Length (Claude Code's exporter
   sends it chunked), refused past ``max_body`` bytes (413 ``request_too_large``), then
   decompressed (gzip/deflate) up to ``max_decoded`` bytes (413 past that).
2. It is decoded as protobuf or OTLP/JSON per Content-Type; a malformed body is a 400
   ``invalid_request_error`` naming the problem (never a stack trace).
3. A signed-in developer's metrics are summed for the activity figures.
4. When a destination takes the signal, the export is stamped with the caller's identity
   (:mod:`.identity`; client-sent identity attributes are replaced), encoded once in protobuf
   and queued for every such destination; with none, it is discarded.
5. An export another data plane forwarded (``x-tollgate-forwarded``: a destination pointing back
   at a gateway) is answered 200 and discarded, so a misconfiguration cannot loop.
6. The answer is 200 with an empty ``Export*ServiceResponse`` in the request's encoding, whether
   the export is forwarded or discarded (a 404 would make the client log an error at every
   flush). Nothing waits for a collector.

Bodies over ``inline_bytes`` are decoded, stamped and encoded in a worker thread, so a large
export does not stall other requests on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from dataplane.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    drain_body,
    header,
    read_body,
    send_error,
    send_response,
)
from dataplane.errors import (
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    RequestTooLarge,
    new_request_id,
)
from dataplane.policy.auth import PRINCIPAL, REQUEST_ID, Principal
from dataplane.telemetry import otlp
from dataplane.telemetry.activity import ActivityAggregator
from dataplane.telemetry.forwarder import FORWARDED_HEADER, Forwarder
from dataplane.telemetry.identity import identity_of
from dataplane.telemetry.metrics import TelemetryMetrics
from dataplane.telemetry.otlp import Encoding, OtlpError, Signal, TooLarge

log = logging.getLogger("tollgate.telemetry")

PATHS: dict[str, Signal] = {"/v1/metrics": "metrics", "/v1/logs": "logs", "/v1/traces": "traces"}
DEFAULT_MAX_BODY = 8 * 1024 * 1024
DEFAULT_MAX_DECODED = 32 * 1024 * 1024
FORWARDED = FORWARDED_HEADER.encode()


@dataclass(frozen=True, slots=True)
class _Prepared:
    message: Message
    payload: bytes | None  # protobuf with identity, when some destination takes it


class OtlpHandler:
    def __init__(
        self,
        forwarder: Forwarder,
        aggregator: ActivityAggregator,
        metrics: TelemetryMetrics,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        max_decoded: int = DEFAULT_MAX_DECODED,
        inline_bytes: int = 64 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.forwarder = forwarder
        self.aggregator = aggregator
        self.metrics = metrics
        self.max_body = max_body
        self.max_decoded = max_decoded
        self.inline_bytes = inline_bytes
        self.clock = clock
        self._loop_warned = -1e9

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id: str = scope.get(REQUEST_ID) or new_request_id()
        signal = PATHS[scope["path"]]
        try:
            await self._handle(signal, scope, receive, send)
        except ClientDisconnected:
            return
        except TooLarge as exc:
            self.metrics.rejected.inc((signal, "too_large"))
            await send_error(send, RequestTooLarge(413, str(exc)), request_id)
        except OtlpError as exc:
            self.metrics.rejected.inc((signal, "malformed"))
            await send_error(send, BadRequest(400, str(exc)), request_id)
        except GatewayError as err:
            reason = "too_large" if isinstance(err, RequestTooLarge) else "invalid"
            self.metrics.rejected.inc((signal, reason))
            await send_error(send, err, request_id)

    async def _handle(self, signal: Signal, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await drain_body(receive)
            raise MethodNotAllowed(405, f"Use POST for {scope['path']} (OTLP/HTTP).")
        try:
            encoding = otlp.encoding_of(header(scope, b"content-type"))
        except OtlpError:
            await drain_body(receive)
            raise
        try:
            body = await read_body(receive, scope, self.max_body)
        except RequestTooLarge:
            raise TooLarge(
                f"The OTLP export is larger than this gateway accepts "
                f"({self.max_body // (1024 * 1024)} MB); lower the exporter's batch size."
            ) from None
        if header(scope, FORWARDED) is not None:
            # Forwarded by a data plane to a destination that is a gateway again: taken (the
            # first data plane already counted and forwarded it), never forwarded a second time.
            self.metrics.discarded.inc((signal,))
            self._warn_loop()
            await _ok(send, encoding)
            return
        coding = header(scope, b"content-encoding")
        principal: Principal = scope[PRINCIPAL]
        identity = identity_of(principal)
        destinations = tuple(
            d for d in principal.snapshot.telemetry_destinations if d.takes(signal)
        )
        attributes = identity.attributes() if destinations else ()

        def prepare() -> _Prepared:
            raw = otlp.decompress(body, coding, self.max_decoded)
            message = otlp.decode(signal, raw, encoding)
            if not destinations:
                return _Prepared(message, None)
            otlp.stamp_identity(signal, message, attributes)
            return _Prepared(message, message.SerializeToString())

        if len(body) <= self.inline_bytes:
            prepared = prepare()
        else:
            prepared = await asyncio.to_thread(prepare)
        self.metrics.received.inc((signal, encoding))
        if signal == "metrics" and identity.is_developer:
            assert isinstance(prepared.message, metrics_service_pb2.ExportMetricsServiceRequest)
            self.aggregator.add(prepared.message, identity, int(self.clock() * 1000))
        if prepared.payload is None:
            self.metrics.discarded.inc((signal,))
        else:
            self.forwarder.submit(signal, prepared.payload, destinations)
        await _ok(send, encoding)

    def _warn_loop(self) -> None:
        now = time.monotonic()
        if now - self._loop_warned >= 60:
            self._loop_warned = now
            log.warning(
                "received telemetry another Tollgate data plane forwarded: a telemetry destination "
                "points back at a gateway; discarded (gwctl telemetry destinations list)"
            )


async def _ok(send: Send, encoding: Encoding) -> None:
    await send_response(
        send, 200, otlp.empty_response(encoding), content_type=otlp.content_type(encoding)
    )
