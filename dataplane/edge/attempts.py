"""The attempt chain: walk a route's plan until one target gives a usable answer.

Rules (P4): move on after a connection error, a timeout, a retryable status (the route's
``retry_on``), or an ``error`` event that arrives as the FIRST upstream event — peeked before
anything is sent, so the client only ever sees one clean stream. A target is tried
``attempts_per_target`` times (jittered exponential backoff, honouring ``retry-after``) before the
next one; moving to the next target is immediate, so an unreachable primary costs one connect
failure. The whole chain is bounded by :data:`DEADLINE_S`. Every attempt is logged in the usage
record with its outcome and timing, and feeds the target's circuit breaker. Once bytes have
reached the client, the answer is committed: later failures end it with an error event (see
``dataplane.edge.relay``).

When every attempt failed, the client gets the last upstream error as the provider sent it, or
the gateway's own 502/504 when no provider answered at all.

With tracing on (``dataplane.edge.tracing``), each attempt sends its own W3C ``traceparent``, whose
parent is that attempt's span.

Circuit breakers: the plan (:mod:`dataplane.policy.routing`) never reads them; the chain asks the
breakers for the order in which to try the plan's targets as it starts (open ones last, a half-open
lead's one probe claimed: :meth:`dataplane.policy.breaker.CircuitBreaker.tried_order`), and records
every attempt's outcome with the target's route's thresholds.

The chain returns what it settled on, a :class:`dataplane.edge.relay.Served`, which
:meth:`Attempts.forward` has the request's relay answer with, while it watches for the client
leaving; the chain writes into nothing but the request's record. ``exchange.upstream_busy`` is cleared while the
chain backs off (a disconnect then cancels at once), and no attempt starts once
``exchange.client_gone``: a non-streamed answer under way when the client left is finished and
metered, nothing more is tried (``ClientDisconnected``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator

import orjson

from dataplane.asgi import ClientDisconnected, Header, Receive
from dataplane.codecs.sse import SSEDecoder, SSEEvent
from dataplane.edge.relay import Exchange, Relay, Served, error_fields, find_header
from dataplane.errors import GatewayError, Unavailable, UpstreamError, answer_failed
from dataplane.metering.meter import METER_SKIP
from dataplane.metering.record import RequestRecord
from dataplane.policy.breaker import CircuitBreaker
from dataplane.policy.retry import RETRYABLE_ERROR_TYPES, backoff_s, is_retryable
from dataplane.policy.routing import Plan
from dataplane.policy.runtime import Target
from dataplane.providers.base import BufferedResponse, UpstreamRequest, UpstreamResponse
from gwapi.v1 import telemetry_pb2

DEADLINE_S = 600.0  # the whole chain, retries and backoff included
# Status the client sees when the only answer was a retryable error event before any byte.
_STATUS_OF_ERROR = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "timeout_error": 504,
    "api_error": 500,
}


def record_outcome(breaker: CircuitBreaker, target: Target, ok: bool) -> None:
    """One attempt's outcome on ``target``: ok = a usable response; failures are connect errors,
    timeouts and retryable statuses (or a retryable first error event)."""
    breaker.record(
        target.name, ok, failures=target.breaker_failures, cooldown_s=target.breaker_cooldown_s
    )


class Attempts:
    """The attempt chain of one data plane (it claims and feeds that data plane's breakers)."""

    def __init__(self, breaker: CircuitBreaker, rng: random.Random | None = None) -> None:
        self.breaker = breaker
        self.rng = rng or random.Random()

    async def forward(
        self, relay: Relay, request: UpstreamRequest, plan: Plan, receive: Receive
    ) -> list[Header] | None:
        """Walk the plan and relay the answer: the headers sent with a complete, successful
        answer (for the cache), else None. If the client goes away: cancel everything, except a
        non-streamed Messages exchange under way, which is read to its end and metered (the
        upstream bills it anyway; see :mod:`dataplane.edge.proxy`)."""
        task = asyncio.current_task()
        assert task is not None
        rec = relay.rec
        exchange = relay.exchange
        meter_to_end = not request.stream and not request.path.endswith("count_tokens")

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if exchange.answered:
                        return  # the response is complete: nobody left early
                    exchange.client_gone = True
                    rec.client_disconnected = True
                    if not (meter_to_end and exchange.upstream_busy):
                        task.cancel()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        exchange.upstream_busy = True
        try:
            served = await self.run(request, plan, rec, exchange)
            return await relay.answer(served)
        except asyncio.CancelledError:
            if not exchange.client_gone:
                raise
            task.uncancel()
            rec.client_disconnected = True
            if not rec.status:
                rec.fail(499, "client_disconnected", "client disconnected")
            return None
        finally:
            exchange.upstream_busy = False
            watcher.cancel()

    async def run(
        self, request: UpstreamRequest, plan: Plan, rec: RequestRecord, exchange: Exchange
    ) -> Served:
        """The first usable answer of the plan's targets, or (every attempt failed) the last
        error a provider sent. Raises the gateway's own error when no provider answered at all,
        and ``ClientDisconnected`` once the client has gone."""
        trace = rec.trace
        started = time.perf_counter()
        deadline = started + DEADLINE_S
        # Peeking costs a little; it only pays when there is somewhere else to go.
        can_move_on = len(plan.targets) > 1 or plan.attempts_per_target > 1
        failure: GatewayError | BufferedResponse | None = None
        retry_after: str | None = None
        for target in self.breaker.tried_order(plan.targets):
            sent_request = for_target(request, target, plan)
            for n in range(plan.attempts_per_target):
                if n:
                    delay = backoff_s(n, retry_after, rng=self.rng)
                    if time.perf_counter() + delay > deadline:
                        break  # no time to wait here: next target
                    exchange.upstream_busy = False  # a disconnect now cancels at once
                    await asyncio.sleep(delay)
                    exchange.upstream_busy = True
                if exchange.client_gone:
                    raise ClientDisconnected  # nobody is waiting for another attempt
                rec.attempts += 1
                rec.provider = target.name
                t0 = time.perf_counter()
                sent = (
                    sent_request
                    if trace is None
                    else trace.upstream(sent_request, target.provider.kind)
                )
                try:
                    upstream = await target.provider.send(sent)
                except GatewayError as err:
                    failure = err
                    transport = isinstance(err, UpstreamError)
                    if transport:
                        record_outcome(self.breaker, target, False)
                    self._log(rec, target, sent_request, started, t0, 0, err.error_type, "retried")
                    retry_after = None
                    if transport:
                        continue
                    break  # e.g. a model this provider can't map: another target may serve it
                if upstream.status != 200 and is_retryable(upstream.status, plan.retry_on):
                    failure = await _buffer(upstream)
                    retry_after = find_header(upstream.headers, b"retry-after") or None
                    record_outcome(self.breaker, target, False)
                    etype = error_fields(failure.body)[0]
                    status = upstream.status
                    self._log(rec, target, sent_request, started, t0, status, etype, "retried")
                    continue
                chunks: AsyncIterator[bytes] | None = None
                if upstream.status == 200 and sent_request.stream and can_move_on:
                    peeked = await self._peek(upstream, target, rec)
                    if isinstance(peeked, BufferedResponse | GatewayError):
                        failure = peeked
                        record_outcome(self.breaker, target, False)
                        status = peeked.status
                        etype = peeked.error_type if isinstance(peeked, GatewayError) else ""
                        self._log(rec, target, sent_request, started, t0, status, etype, "retried")
                        retry_after = None
                        continue
                    chunks = peeked
                # A usable answer (a non-retryable 4xx included: the client's problem, not the
                # provider's). From here on the answer is this target's.
                record_outcome(self.breaker, target, True)
                self._log(rec, target, sent_request, started, t0, upstream.status, "", "served")
                return Served(sent_request, upstream, target.name, rec.attempts, chunks)
            _mark_fell_back(rec)
        return self._give_up(request, rec, exchange, failure)

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
            return answer_failed(exc, f"Provider '{target.name}' failed before its first event.")
        if first is not None and first.event == "error":
            etype, message = error_fields(first.data.encode())
            if etype in RETRYABLE_ERROR_TYPES:
                await upstream.aclose()
                body = orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})
                return BufferedResponse(
                    _STATUS_OF_ERROR.get(etype, 500), [(b"content-type", b"application/json")], body
                )
        return _chain(prefix, source)

    @staticmethod
    def _give_up(
        request: UpstreamRequest,
        rec: RequestRecord,
        exchange: Exchange,
        failure: GatewayError | BufferedResponse | None,
    ) -> Served:
        """Every attempt failed: the last provider error as sent, or the gateway's own."""
        if exchange.client_gone:
            raise ClientDisconnected
        if isinstance(failure, BufferedResponse):
            return Served(request, failure, rec.provider, rec.attempts)
        if failure is None:
            failure = Unavailable(503, "No provider of this route could be tried; please retry.")
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


async def _chain(prefix: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks read while peeking, then the rest of the stream."""
    for chunk in prefix:
        yield chunk
    async for chunk in rest:
        yield chunk
