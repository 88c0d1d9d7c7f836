"""The attempt chain: walk a route's plan until one target gives a usable answer.

Rules (P4): move on after a connection error, a timeout, a retryable status (the route's
``retry_on``), or an ``error`` event that arrives as the FIRST upstream event — peeked before
anything is sent, so the client only ever sees one clean stream. A target is tried
``attempts_per_target`` times (jittered exponential backoff, honouring ``retry-after``) before the
next one; moving to the next target is immediate, so an unreachable primary costs one connect
failure. The whole chain is bounded by :data:`DEADLINE_S`. Every attempt is logged in the usage
record with its outcome and timing, and feeds the target's circuit breaker. Once bytes have
reached the client, the answer is committed: later failures end it with an error event (see
``dataplane.relay``).

When every attempt failed, the client gets the last upstream error as the provider sent it, or
the gateway's own 502/504 when no provider answered at all.

With tracing on (``dataplane.tracing``), each attempt sends its own W3C ``traceparent``, whose
parent is that attempt's span.

``relay.upstream_busy`` is set while an attempt talks to its upstream (not while backing off), and
no attempt starts once ``relay.client_gone``: a non-streamed answer under way when the client left
is finished and metered, nothing more is tried (``ClientDisconnected``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator

import orjson

from dataplane.asgi import ClientDisconnected
from dataplane.codecs.sse import SSEDecoder, SSEEvent
from dataplane.errors import GatewayError
from dataplane.metering import METER_SKIP
from dataplane.providers.base import BufferedResponse, UpstreamRequest, UpstreamResponse
from dataplane.record import RequestRecord
from dataplane.relay import Relay, chain, error_fields, find_header, is_timeout
from dataplane.retry import RETRYABLE_ERROR_TYPES, backoff_s, is_retryable
from dataplane.routing import Plan, Router, Target
from gwapi.v1 import telemetry_pb2

DEADLINE_S = 600.0  # the whole chain, retries and backoff included
# Status the client sees when the only answer was a retryable error event before any byte.
_STATUS_OF_ERROR = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "timeout_error": 504,
    "api_error": 500,
}


class Attempts:
    def __init__(self, router: Router, rng: random.Random | None = None) -> None:
        self.router = router
        self.rng = rng or random.Random()

    async def run(self, relay: Relay, plan: Plan) -> None:
        relay.upstream_busy = True
        try:
            await self._run(relay, plan)
        finally:
            relay.upstream_busy = False

    async def _run(self, relay: Relay, plan: Plan) -> None:
        rec = relay.rec
        trace = rec.trace
        started = time.perf_counter()
        deadline = started + DEADLINE_S
        # Peeking costs a little; it only pays when there is somewhere else to go.
        can_move_on = len(plan.targets) > 1 or plan.attempts_per_target > 1
        failure: GatewayError | BufferedResponse | None = None
        retry_after: str | None = None
        for target in plan.targets:
            request = for_target(relay.request, target, plan)
            for n in range(plan.attempts_per_target):
                if n:
                    delay = backoff_s(n, retry_after, rng=self.rng)
                    if time.perf_counter() + delay > deadline:
                        break  # no time to wait here: next target
                    relay.upstream_busy = False  # a disconnect now cancels at once
                    await asyncio.sleep(delay)
                    relay.upstream_busy = True
                if relay.client_gone:
                    raise ClientDisconnected  # nobody is waiting for another attempt
                rec.attempts += 1
                rec.provider = target.name
                t0 = time.perf_counter()
                sent = request if trace is None else trace.upstream(request, target.provider.kind)
                try:
                    upstream = await target.provider.send(sent)
                except GatewayError as err:
                    failure = err
                    transport = err.status in (502, 504)
                    if transport:
                        self.router.record(target.name, False)
                    self._log(rec, target, request, started, t0, 0, err.error_type, "retried")
                    retry_after = None
                    if transport:
                        continue
                    break  # e.g. a model this provider can't map: another target may serve it
                if upstream.status != 200 and is_retryable(upstream.status, plan.retry_on):
                    failure = await _buffer(upstream)
                    retry_after = find_header(upstream.headers, b"retry-after") or None
                    self.router.record(target.name, False)
                    etype = error_fields(failure.body)[0]
                    self._log(rec, target, request, started, t0, upstream.status, etype, "retried")
                    continue
                chunks: AsyncIterator[bytes] | None = None
                if upstream.status == 200 and request.stream and can_move_on:
                    peeked = await self._peek(upstream, target, rec)
                    if isinstance(peeked, BufferedResponse | GatewayError):
                        failure = peeked
                        self.router.record(target.name, False)
                        status = peeked.status
                        etype = peeked.error_type if isinstance(peeked, GatewayError) else ""
                        self._log(rec, target, request, started, t0, status, etype, "retried")
                        retry_after = None
                        continue
                    chunks = peeked
                # A usable answer (a non-retryable 4xx included: the client's problem, not the
                # provider's). From here on the answer is this target's.
                self.router.record(target.name, True)
                self._log(rec, target, request, started, t0, upstream.status, "", "served")
                relay.request = request
                relay.extra.append((b"x-tollgate-attempts", str(rec.attempts).encode()))
                await self._relay(relay, upstream, chunks)
                return
            _mark_fell_back(rec)
        await self._give_up(relay, failure)

    async def _relay(
        self, relay: Relay, upstream: UpstreamResponse, chunks: AsyncIterator[bytes] | None
    ) -> None:
        try:
            if upstream.status != 200 or not relay.request.stream:
                try:
                    body = await upstream.read()
                except Exception as exc:  # transport failure while reading the body
                    status = 504 if is_timeout(exc) else 502
                    raise GatewayError(
                        status,
                        f"The answer from provider '{relay.rec.provider}' failed; please retry.",
                    ) from exc
                await relay.whole(upstream, body)
            else:
                await relay.stream(upstream, chunks if chunks is not None else upstream.aiter_raw())
        finally:
            await upstream.aclose()
            if relay.rec.trace is not None:
                relay.rec.trace.relay_end = time.perf_counter()

    async def _peek(
        self, upstream: UpstreamResponse, target: Target, rec: RequestRecord
    ) -> AsyncIterator[bytes] | BufferedResponse | GatewayError:
        """Read until the first event the meter cares about. A retryable ``error`` event (or a
        failure) there means nothing reached the client yet: the caller moves on."""
        source = upstream.aiter_raw().__aiter__()
        prefix: list[bytes] = []
        decoder = SSEDecoder(skip=METER_SKIP)
        first: SSEEvent | None = None
        try:
            while first is None:
                try:
                    chunk = await source.__anext__()
                except StopAsyncIteration:
                    break
                prefix.append(chunk)
                events = decoder.feed(chunk)
                if events:
                    first = events[0]
        except Exception as exc:
            await upstream.aclose()
            status = 504 if is_timeout(exc) else 502
            return GatewayError(status, f"Provider '{target.name}' failed before its first event.")
        if first is not None and first.event == "error":
            etype, message = error_fields(first.data.encode())
            if etype in RETRYABLE_ERROR_TYPES:
                await upstream.aclose()
                body = orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})
                return BufferedResponse(
                    _STATUS_OF_ERROR.get(etype, 500), [(b"content-type", b"application/json")], body
                )
        return chain(prefix, source)

    async def _give_up(self, relay: Relay, failure: GatewayError | BufferedResponse | None) -> None:
        """Every attempt failed: the last provider error as sent, or the gateway's own."""
        if relay.client_gone:
            raise ClientDisconnected
        if isinstance(failure, BufferedResponse):
            relay.extra.append((b"x-tollgate-attempts", str(relay.rec.attempts).encode()))
            await relay.whole(failure, failure.body)
            return
        if failure is None:
            failure = GatewayError(503, "No provider of this route could be tried; please retry.")
        raise failure

    @staticmethod
    def _log(
        rec: RequestRecord,
        target: Target,
        request: UpstreamRequest,
        started: float,
        t0: float,
        status: int,
        error_type: str,
        outcome: str,
    ) -> None:
        now = time.perf_counter()
        if rec.trace is not None:
            rec.trace.attempt_done(now)
        rec.attempt_log.append(
            telemetry_pb2.Attempt(
                provider=target.name,
                model=request.model,
                status=status,
                error_type=error_type,
                outcome=outcome,
                start_offset_ms=round((t0 - started) * 1000),
                duration_ms=round((now - t0) * 1000),
            )
        )


def _mark_fell_back(rec: RequestRecord) -> None:
    """The last attempt at a target that we are leaving was a fall-back, not a plain retry."""
    log = rec.attempt_log
    if log and log[-1].outcome == "retried":
        log[-1].outcome = "fell_back"


def for_target(request: UpstreamRequest, target: Target, plan: Plan) -> UpstreamRequest:
    """The request as this target gets it: the route's timeouts, and its model override (the
    only case where the Anthropic door's bytes are rewritten: the model must change)."""
    if not target.model or target.model == request.model:
        if plan.timeouts is None:
            return request
        return dataclasses.replace(request, timeouts=plan.timeouts)
    body = dict(request.json)
    body["model"] = target.model
    return dataclasses.replace(
        request, model=target.model, json=body, body=orjson.dumps(body), timeouts=plan.timeouts
    )


async def _buffer(upstream: UpstreamResponse) -> BufferedResponse:
    try:
        body = await upstream.read()
    except Exception:
        body = b""
    finally:
        await upstream.aclose()
    return BufferedResponse(upstream.status, list(upstream.headers), body)
