"""Sending one upstream answer back to the client, in its door's format, metering as it goes.

Pass-through doors (Anthropic, Vertex) get the upstream's bytes unchanged, each chunk sent before
the side decoder looks at it; the Bedrock door re-frames every decoded event. A failure after the
200 was committed ends the stream with an error event in the client's format — never a silent,
clean-looking end. When the response cache records the answer, the exact bytes the client got are
what it keeps.

The relay takes what the attempt chain settled on (:class:`Served`) and nothing else from it;
:class:`Exchange` is the one piece of state the relay, the attempt chain and the handler's
disconnect watcher share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import orjson

from dataplane.asgi import Header, Send
from dataplane.codecs.sse import SSEDecoder
from dataplane.edge.doors.base import Door
from dataplane.errors import ERROR_TYPES, UpstreamTimeout, answer_failed, error_event
from dataplane.metering.meter import METER_SKIP, StreamMeter, usage_from_message
from dataplane.metering.record import RequestRecord
from dataplane.policy.auth import Principal
from dataplane.policy.cache import CacheRecorder
from dataplane.providers.base import UpstreamRequest, UpstreamResponse

log = logging.getLogger("tollgate.relay")

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


def response_headers(
    upstream: Iterable[Header], request_id: str, provider: str, extra: Iterable[Header]
) -> list[Header]:
    out = [(k.lower(), v) for k, v in upstream if k.lower() not in _DROP_RESPONSE]
    if not any(k == b"request-id" for k, _ in out):
        out.append((b"request-id", request_id.encode()))
    out.append((b"x-tollgate-request-id", request_id.encode()))
    out.append((b"x-tollgate-provider", provider.encode()))
    out.extend(extra)
    return out


def find_header(headers: Iterable[Header], name: bytes) -> str:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return ""


def error_fields(body: bytes) -> tuple[str, str]:
    """Best-effort (type, message) of an Anthropic-shaped error body."""
    try:
        obj = orjson.loads(body)
        err = obj.get("error", {}) if isinstance(obj, dict) else {}
        return str(err.get("type", "")), str(err.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return "", body[:200].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Served:
    """What the attempt chain settled on (:meth:`dataplane.edge.attempts.Attempts.run`)."""

    request: UpstreamRequest  # as the answering target got it (its model, the route's timeouts)
    upstream: UpstreamResponse  # that target's answer, or the last failure kept (buffered)
    provider: str  # the target that answered, or the last one tried when none did
    attempts: int  # attempts made, this one included
    chunks: AsyncIterator[bytes] | None = None  # a streamed body whose start was peeked


@dataclass(slots=True)
class Exchange:
    """What the handler's disconnect watcher, the attempt chain and the relay share."""

    # The client has gone (set by the watcher): nothing more is sent, no attempt starts, and a
    # non-streamed answer still arriving is only metered.
    client_gone: bool = False
    # An upstream exchange is under way (the handler sets it; the chain clears it while backing
    # off, when a disconnect may cancel at once).
    upstream_busy: bool = False
    # The answer's last bytes have been handed to the server. A disconnect from then on is the
    # server ending the exchange (Hypercorn says ``http.disconnect`` from inside that very send,
    # as ASGI allows), not the client leaving.
    answered: bool = False


@dataclass(slots=True)
class Relay:
    """One answer's trip back: the context every relay step needs."""

    door: Door
    principal: Principal
    rec: RequestRecord
    send: Send
    extra: list[Header]  # headers of the gateway's own (limits, cache status)
    exchange: Exchange
    recorder: CacheRecorder | None = None

    async def answer(self, served: Served) -> list[Header] | None:
        """Relay ``served`` to the client; the headers it got with a complete, successful
        answer (what the cache keeps with it), else None."""
        upstream, request = served.upstream, served.request
        extra = [*self.extra, (b"x-tollgate-attempts", str(served.attempts).encode())]
        try:
            if upstream.status != 200 or not request.stream:
                try:
                    body = await upstream.read()
                except Exception as exc:  # transport failure while reading the body
                    raise answer_failed(
                        exc, f"The answer from provider '{served.provider}' failed; please retry."
                    ) from exc
                return await self.whole(request, upstream, body, served.provider, extra)
            chunks = served.chunks if served.chunks is not None else upstream.aiter_raw()
            return await self.stream(request, upstream, chunks, served.provider, extra)
        finally:
            await upstream.aclose()
            if self.rec.trace is not None:
                self.rec.trace.relay_end = time.perf_counter()

    def price(self, request: UpstreamRequest) -> None:
        self.rec.priced = self.principal.snapshot.prices.price(
            self.rec.model_served, self.rec.usage, request.betas
        )

    async def whole(
        self,
        request: UpstreamRequest,
        upstream: UpstreamResponse,
        body: bytes,
        provider: str,
        extra: list[Header],
    ) -> list[Header] | None:
        """A complete answer (non-streamed, or an upstream error): forwarded byte for byte.

        A Messages answer is metered before it is sent, so that it is billed also when the
        client left while it was being generated (then it is only metered, status 499)."""
        rec = self.rec
        headers = response_headers(upstream.headers, request.request_id, provider, extra)
        rec.upstream_request_id = find_header(upstream.headers, b"request-id")
        rec.status = upstream.status
        rec.mark_first_byte()
        etype = message = ""
        if upstream.status != 200:
            etype, message = error_fields(body)
            rec.fail(
                upstream.status, etype or ERROR_TYPES.get(upstream.status, "api_error"), message
            )
            body, more = self.door.upstream_error(upstream.status, body)
            headers.extend(more)
        elif request.path.endswith("/messages"):
            self._meter_message(request, body)
        else:
            rec.model_served = request.model  # count_tokens: nothing to bill
        if self.exchange.client_gone:
            if upstream.status == 200:
                rec.fail(499, "client_disconnected", "client disconnected before the answer")
            return None
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send(
            {"type": "http.response.start", "status": upstream.status, "headers": headers}
        )
        self.exchange.answered = True
        await self.send({"type": "http.response.body", "body": body})
        if upstream.status != 200:
            return None
        if self.recorder is not None:
            self.recorder.add(body)
        return headers

    def _meter_message(self, request: UpstreamRequest, body: bytes) -> None:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(obj, dict):
            rec = self.rec
            rec.usage = usage_from_message(obj)
            model = obj.get("model")
            rec.model_served = model if isinstance(model, str) else request.model
            self.price(request)

    async def stream(
        self,
        request: UpstreamRequest,
        upstream: UpstreamResponse,
        chunks: AsyncIterator[bytes],
        provider: str,
        extra: list[Header],
    ) -> list[Header] | None:
        """A streamed 200: the headers sent when the answer completed (message_stop, no
        error), else None."""
        rec = self.rec
        headers = response_headers(upstream.headers, request.request_id, provider, extra)
        encoder = self.door.encoder()
        if encoder is not None:
            headers = [(k, v) for k, v in headers if k != b"content-type"]
            headers.append((b"content-type", encoder.content_type))
        rec.upstream_request_id = find_header(upstream.headers, b"request-id")
        rec.status = 200
        decoder = SSEDecoder() if encoder is not None else SSEDecoder(skip=METER_SKIP)
        meter = StreamMeter()
        content = meter.content
        recorder = self.recorder
        failed = False

        async def emit_error(error_type: str, message: str) -> None:
            nonlocal failed
            failed = True
            frame = (
                error_event(error_type, message)
                if encoder is None
                else encoder.error(error_type, message)
            )
            await self.send({"type": "http.response.body", "body": frame, "more_body": True})
            rec.fail(200, error_type, message)

        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            if encoder is None:
                await self._pass_through(chunks, decoder, meter)
            else:
                async for chunk in chunks:
                    events = decoder.feed(chunk)
                    for event in events:
                        meter.feed(event)
                    out = encoder.encode(events)
                    if out:
                        await self.send(
                            {"type": "http.response.body", "body": out, "more_body": True}
                        )
                    content.feed(chunk)  # every chunk: a line may end in a later one
                    if not out:
                        continue
                    if recorder is not None:
                        recorder.add(out)
                    if rec.ttfb_s is None:
                        rec.mark_first_byte()
            if meter.error is None and not meter.saw_message_stop:
                # The upstream ended cleanly but early: never let that look like a finished answer.
                await emit_error(
                    "api_error",
                    f"The stream from provider '{provider}' ended before message_stop.",
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # transport failure mid-stream: the 200 is committed already
            log.warning(
                "request %s: upstream stream failed: %s",
                request.request_id,
                type(exc).__name__,
            )
            await emit_error(
                "timeout_error" if isinstance(exc, UpstreamTimeout) else "api_error",
                f"The stream from provider '{provider}' failed mid-answer; please retry.",
            )
        finally:
            # Without its final usage (the client or the upstream left early) the output is
            # estimated from the content relayed, so an early close never avoids its cost.
            rec.usage, rec.output_estimated = meter.billable(request.max_tokens)
            rec.model_served = meter.model or request.model
            if meter.error is not None:
                rec.fail(200, meter.error[0], meter.error[1])
            self.price(request)
        self.exchange.answered = True
        await self.send({"type": "http.response.body", "body": b""})
        complete = not failed and meter.error is None and meter.saw_message_stop
        return headers if complete else None

    async def _pass_through(
        self, chunks: AsyncIterator[bytes], decoder: SSEDecoder, meter: StreamMeter
    ) -> None:
        """The loop of :meth:`stream` for a pass-through door, which runs once per token of
        every streamed answer: its steps looked up once."""
        send = self.send
        decode = decoder.feed
        count = meter.content.feed
        on_event = meter.feed
        recorder = self.recorder
        first = True
        async for chunk in chunks:
            if not chunk:
                continue
            # The client gets the upstream's bytes before we look at them.
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            count(chunk)
            events = decode(chunk)
            if events:
                for event in events:
                    on_event(event)
            if recorder is not None:
                recorder.add(chunk)
            if first:
                first = False
                self.rec.mark_first_byte()
