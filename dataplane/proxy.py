"""The request path for ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Hot-path rules (ARCHITECTURE.md): the client's body bytes go upstream unchanged; the body is
parsed once, only to read ``model``/``stream``/``max_tokens``; the upstream's bytes come back
unchanged, each chunk sent on as it arrives while a side decoder meters usage from it; nothing
here touches a disk, a database or the control plane. A client disconnect cancels the upstream
call and still records the usage seen so far.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson

from dataplane.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_error_body,
)
from dataplane.auth import PRINCIPAL, REQUEST_ID, Principal
from dataplane.codecs.sse import SSEDecoder
from dataplane.counters.memory import MemoryCounters
from dataplane.doors.anthropic import AnthropicDoor
from dataplane.doors.base import Door
from dataplane.errors import (
    ERROR_TYPES,
    GatewayError,
    error_event,
    new_request_id,
    upstream_timeout,
)
from dataplane.events import RequestRecord, parse_metadata
from dataplane.limits import Admission, Limiter
from dataplane.providers.base import Header, UpstreamRequest, UpstreamResponse
from dataplane.routing import Router
from dataplane.usage import METER_SKIP, StreamMeter, usage_from_message

log = logging.getLogger("tollgate.proxy")

# Request headers never forwarded: hop-by-hop, the client's own credentials (the virtual key never
# goes upstream), and our own control headers. Everything else, anthropic-* above all, passes.
_DROP_REQUEST = frozenset(
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
# Response headers the server sets itself (length/framing) or that are hop-by-hop.
_DROP_RESPONSE = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"upgrade",
        b"server",
        b"date",
    }
)


def forwardable_headers(headers: list[Header]) -> tuple[Header, ...]:
    return tuple(
        (k, v) for k, v in headers if k not in _DROP_REQUEST and not k.startswith(b"x-tollgate-")
    )


def response_headers(
    upstream: list[Header], request_id: str, provider: str, extra: list[Header]
) -> list[Header]:
    out = [(k.lower(), v) for k, v in upstream if k.lower() not in _DROP_RESPONSE]
    if not any(k == b"request-id" for k, _ in out):
        out.append((b"request-id", request_id.encode()))
    out.append((b"x-tollgate-request-id", request_id.encode()))
    out.append((b"x-tollgate-provider", provider.encode()))
    out.extend(extra)
    return out


def _error_of(body: bytes) -> tuple[str, str]:
    """Best-effort (type, message) of an upstream error body, for the usage record only."""
    try:
        obj = orjson.loads(body)
        err = obj.get("error", {}) if isinstance(obj, dict) else {}
        return str(err.get("type", "")), str(err.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return "", body[:200].decode("utf-8", "replace")


class MessagesHandler:
    """ASGI endpoint for Messages and count_tokens; needs AuthMiddleware in front."""

    def __init__(
        self,
        router: Router,
        record_sink: Callable[[RequestRecord], None],
        dataplane_id: str,
        max_body: int,
        door: Door | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.router = router
        self.limiter = limiter or Limiter(MemoryCounters())
        self.sink = record_sink
        self.dataplane_id = dataplane_id
        self.max_body = max_body
        self.door: Door = door or AnthropicDoor()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal = scope[PRINCIPAL]
        request_id: str = scope.get(REQUEST_ID) or new_request_id()
        door = self.door
        rec = RequestRecord(
            request_id=request_id, dataplane_id=self.dataplane_id, path=scope["path"]
        )
        rec.workspace = principal.workspace.name
        rec.key_id = principal.key.id
        rec.key_name = principal.key.name
        rec.session_id = (header(scope, b"x-claude-code-session-id") or b"").decode("latin-1")
        rec.user_agent = (header(scope, b"user-agent") or b"").decode("latin-1")
        count_only = False
        admission: Admission | None = None
        try:
            rec.metadata = parse_metadata(header(scope, b"x-tollgate-metadata"))
            body = await read_body(receive, scope, self.max_body)
            prepared = door.prepare(scope, body, forwardable_headers(scope["headers"]))
            count_only = prepared.count_only
            rec.model_requested = prepared.model
            rec.stream = prepared.stream
            principal.check_model(prepared.model)
            if not count_only:  # counting tokens costs nothing and counts against nothing
                admission = await self.limiter.admit(
                    principal,
                    model=prepared.model,
                    body_bytes=len(prepared.body),
                    max_tokens=prepared.max_tokens,
                    prices=principal.snapshot.prices,
                    request_id=request_id,
                    redis_failure=principal.workspace.redis_failure or None,
                )
            request = UpstreamRequest(
                path="/v1/messages/count_tokens" if count_only else "/v1/messages",
                # Only the Anthropic door's query means anything to an Anthropic-format upstream.
                query=scope.get("query_string", b"") if door.name == "anthropic" else b"",
                headers=prepared.headers,
                body=prepared.body,
                model=prepared.model,
                stream=prepared.stream,
                request_id=request_id,
                json=prepared.json,
                client_authorization=header(scope, b"authorization")
                if header(scope, b"x-tollgate-key")
                else None,
            )
            extra = self.limiter.headers(admission) if admission is not None else []
            await self._forward(principal, request, rec, receive, send, extra)
        except ClientDisconnected:
            rec.client_disconnected = True
            rec.fail(499, "client_disconnected", "client disconnected before the request completed")
        except GatewayError as err:
            rec.fail(err.status, err.error_type, err.message)
            body, extra = door.error_body(err.status, err.error_type, err.message, request_id)
            await send_error_body(send, err.status, body, [*err.headers, *extra], request_id)
        finally:
            if admission is not None:
                await self._finish(admission, rec)
            if not count_only:
                self.sink(rec)

    async def _finish(self, admission: Admission, rec: RequestRecord) -> None:
        """Settle the reservation to what the answer cost (a disconnect included), or release
        it when nothing was served (an upstream error, a failure before any usage was seen)."""
        try:
            if rec.priced is not None:
                u = rec.usage
                await self.limiter.settle(
                    admission, rec.priced.cost_micros, u.prompt_tokens, u.output_tokens
                )
            else:
                await self.limiter.release(admission)
        except Exception:  # never let bookkeeping break a response that is already out
            log.exception("request %s: settling its reservation failed", rec.request_id)

    async def _forward(
        self,
        principal: Principal,
        request: UpstreamRequest,
        rec: RequestRecord,
        receive: Receive,
        send: Send,
        extra: list[Header],
    ) -> None:
        """Send upstream and relay back, cancelling everything if the client goes away."""
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    task.cancel()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await self._attempt(principal, request, rec, send, extra)
        except asyncio.CancelledError:
            if not gone.is_set():
                raise
            task.uncancel()
            rec.client_disconnected = True
            if not rec.status:
                rec.fail(499, "client_disconnected", "client disconnected")
        finally:
            watcher.cancel()

    async def _attempt(
        self,
        principal: Principal,
        request: UpstreamRequest,
        rec: RequestRecord,
        send: Send,
        extra: list[Header],
    ) -> None:
        target = self.router.primary(principal)
        rec.provider = target.name
        rec.attempts = 1
        upstream = await target.send(request)
        try:
            if upstream.status != 200 or not request.stream:
                await self._relay_whole(upstream, request, rec, principal, send, extra)
            else:
                await self._relay_stream(upstream, request, rec, principal, send, extra)
        finally:
            await upstream.aclose()

    async def _relay_whole(
        self,
        upstream: UpstreamResponse,
        request: UpstreamRequest,
        rec: RequestRecord,
        principal: Principal,
        send: Send,
        extra: list[Header],
    ) -> None:
        """Non-streamed answers and upstream errors: forwarded byte for byte."""
        try:
            body = await upstream.read()
        except Exception as exc:  # transport failure while reading the body
            raise upstream_timeout(rec.provider) if _is_timeout(exc) else _unreachable(rec) from exc
        headers = response_headers(upstream.headers, request.request_id, rec.provider, extra)
        rec.upstream_request_id = _find(upstream.headers, b"request-id")
        rec.status = upstream.status
        rec.mark_first_byte()
        if upstream.status != 200:
            etype, message = _error_of(body)
            body, extra = self.door.upstream_error(upstream.status, body)
            headers.extend(extra)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if upstream.status != 200:
            rec.fail(
                upstream.status, etype or ERROR_TYPES.get(upstream.status, "api_error"), message
            )
            return
        if request.path.endswith("/messages"):
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError:
                return
            if isinstance(obj, dict):
                rec.usage = usage_from_message(obj)
                model = obj.get("model")
                rec.model_served = model if isinstance(model, str) else request.model
                self._price(principal, rec, request)

    async def _relay_stream(
        self,
        upstream: UpstreamResponse,
        request: UpstreamRequest,
        rec: RequestRecord,
        principal: Principal,
        send: Send,
        extra: list[Header],
    ) -> None:
        headers = response_headers(upstream.headers, request.request_id, rec.provider, extra)
        encoder = self.door.encoder()
        if encoder is not None:
            headers = [(k, v) for k, v in headers if k != b"content-type"]
            headers.append((b"content-type", encoder.content_type))
        rec.upstream_request_id = _find(upstream.headers, b"request-id")
        rec.status = 200
        decoder = SSEDecoder() if encoder is not None else SSEDecoder(skip=METER_SKIP)
        meter = StreamMeter()

        async def emit_error(error_type: str, message: str) -> None:
            frame = (
                error_event(error_type, message)
                if encoder is None
                else encoder.error(error_type, message)
            )
            await send({"type": "http.response.body", "body": frame, "more_body": True})
            rec.fail(200, error_type, message)

        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            async for chunk in upstream.aiter_raw():
                if not chunk:
                    continue
                if encoder is None:
                    # Pass-through: the client gets the upstream's bytes before we look at them.
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    for event in decoder.feed(chunk):
                        meter.feed(event)
                else:
                    events = decoder.feed(chunk)
                    for event in events:
                        meter.feed(event)
                    out = encoder.encode(events)
                    if not out:
                        continue
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if rec.ttfb_s is None:
                    rec.mark_first_byte()
            if meter.error is None and not meter.saw_message_stop:
                # The upstream ended cleanly but early: never let that look like a finished answer.
                await emit_error(
                    "api_error",
                    f"The stream from provider '{rec.provider}' ended before message_stop.",
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # transport failure mid-stream: the 200 is committed already
            log.warning(
                "request %s: upstream stream failed: %s", request.request_id, type(exc).__name__
            )
            await emit_error(
                "timeout_error" if _is_timeout(exc) else "api_error",
                f"The stream from provider '{rec.provider}' failed mid-answer; please retry.",
            )
        finally:
            rec.usage = meter.usage
            rec.model_served = meter.model or request.model
            if meter.error is not None:
                rec.fail(200, meter.error[0], meter.error[1])
            self._price(principal, rec, request)
        await send({"type": "http.response.body", "body": b""})

    def _price(self, principal: Principal, rec: RequestRecord, request: UpstreamRequest) -> None:
        betas = _betas(request.headers)
        rec.priced = principal.snapshot.prices.price(rec.model_served, rec.usage, betas)


def _find(headers: list[Header], name: bytes) -> str:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return ""


def _betas(headers: tuple[Header, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for k, v in headers:
        if k == b"anthropic-beta":
            out.extend(b.strip() for b in v.decode("latin-1").split(",") if b.strip())
    return tuple(out)


def _is_timeout(exc: BaseException) -> bool:
    """A read that timed out: any TimeoutError (asyncio's; aiohttp's SocketTimeoutError and
    ServerTimeoutError subclass it) or an exception class named like one."""
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def _unreachable(rec: RequestRecord) -> GatewayError:
    return GatewayError(502, f"The connection to provider '{rec.provider}' failed; please retry.")
