"""The request path for ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Hot-path rules (ARCHITECTURE.md): the client's body bytes go upstream unchanged; the body is
parsed once, only to read ``model``/``stream``/``max_tokens``; the upstream's bytes come back
unchanged, each chunk sent on as it arrives while a side decoder meters usage from it; nothing
here touches a disk, a database or the control plane. Request logging (the workspace's
``log_bodies``) captures into memory only, via :mod:`dataplane.metering.bodylog`.

A client disconnect cancels a streamed upstream call and records the usage seen so far (the
output estimated when the final usage never came, see :mod:`dataplane.metering.meter`). A *non-streamed*
call whose upstream exchange is under way is not cancelled: the upstream goes on generating (and
billing) anyway, so the answer is read to its end — within the route's timeouts, like any answer
— and metered exactly, with nobody waiting for it (status 499, ``client_disconnected``); no
further attempt starts. ``count_tokens`` calls pass the rate limits (rpm, rph, max_parallel;
never a budget) and are recorded at cost 0. A disconnect seen once the answer's last bytes were
handed to the server is the server closing the exchange, not the client leaving.

The handler goes forward only: once the answer is out, or the request failed, it hands the request
to :class:`dataplane.edge.closeout.CloseOut` (the failure written, the cache store, the usage
event, the reservation settled — in that order) and is done with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.asgi import (
    ClientDisconnected,
    Header,
    Receive,
    Scope,
    Send,
    header,
    read_body,
)
from dataplane.edge.attempts import Attempts
from dataplane.edge.closeout import Answered, CloseOut
from dataplane.edge.doors.base import Door, Prepared
from dataplane.edge.relay import Exchange, Relay
from dataplane.errors import GatewayError, new_request_id
from dataplane.metering.bodylog import BodyLog
from dataplane.metering.record import RequestRecord, parse_metadata
from dataplane.policy.auth import PRINCIPAL, REQUEST_ID, Principal, passthrough_authorization
from dataplane.policy.cache import (
    CONTROL_HEADER,
    HIT,
    CacheBackend,
    CacheRecorder,
    cache_key,
    decide,
    replay,
    replay_headers,
)
from dataplane.policy.limits import Limiter
from dataplane.policy.reservation import Admission
from dataplane.policy.routing import Plan, Router
from dataplane.providers.base import UpstreamRequest

if TYPE_CHECKING:  # imported only when tracing is on (dataplane.process.server)
    from dataplane.edge.tracing.spans import Tracer

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


# With tracing on, the client's W3C trace context is continued, not forwarded: each attempt sends
# its own traceparent (dataplane.edge.tracing.context). With tracing off both pass through untouched.
_DROP_REQUEST_TRACED = _DROP_REQUEST | {b"traceparent", b"tracestate"}


def forwardable_headers(
    headers: list[Header], drop: frozenset[bytes] = _DROP_REQUEST
) -> tuple[Header, ...]:
    return tuple((k, v) for k, v in headers if k not in drop and not k.startswith(b"x-tollgate-"))


class ApiHandler:
    """ASGI endpoint for Messages and count_tokens behind one door (Anthropic, Bedrock or
    Vertex: one handler per door, one code path); needs AuthMiddleware in front.

    Every collaborator is given: ``tracer`` None means tracing is off."""

    def __init__(
        self,
        router: Router,
        attempts: Attempts,
        record_sink: Callable[[RequestRecord], None],
        dataplane_id: str,
        max_body: int,
        door: Door,
        limiter: Limiter,
        cache: CacheBackend,
        tracer: Tracer | None,
    ) -> None:
        self.router = router
        self.attempts = attempts
        self.limiter = limiter
        self.cache = cache
        self.dataplane_id = dataplane_id
        self.max_body = max_body
        self.door = door
        self.tracer = tracer
        self.closeout = CloseOut(door, cache, record_sink, tracer)
        self._drop = _DROP_REQUEST if tracer is None else _DROP_REQUEST_TRACED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal = scope[PRINCIPAL]
        request_id: str = scope.get(REQUEST_ID) or new_request_id()
        door = self.door
        rec = RequestRecord(
            request_id=request_id, dataplane_id=self.dataplane_id, path=scope["path"]
        )
        tracer = self.tracer
        if tracer is not None:  # the whole cost of tracing when it is off
            rec.trace = tracer.begin(scope["headers"], rec.started)
        rec.workspace = principal.workspace.name
        member = principal.member
        rec.key_id = member.key_id
        rec.key_name = member.key_name
        rec.developer_id = member.developer_id
        rec.developer_email = member.developer_email
        rec.session_id = (header(scope, b"x-claude-code-session-id") or b"").decode("latin-1")
        rec.user_agent = (header(scope, b"user-agent") or b"").decode("latin-1")
        workspace = principal.workspace
        if workspace.log_bodies != "none":  # the only cost of request logging when it is off
            rec.log = BodyLog(workspace.log_bodies, workspace.log_body_max_bytes, scope["headers"])
            send = rec.log.wrap(send)
        count_only = False
        admission: Admission | None = None
        answered: Answered | None = None
        failure: GatewayError | ClientDisconnected | None = None
        try:
            rec.metadata = parse_metadata(header(scope, b"x-tollgate-metadata"))
            body = await read_body(receive, scope, self.max_body)
            if rec.log is not None:
                rec.log.add_request(body)
            prepared = door.prepare(scope, body, forwardable_headers(scope["headers"], self._drop))
            count_only = prepared.count_only
            rec.model_requested = prepared.model
            rec.stream = prepared.stream
            trace = rec.trace
            if trace is not None:
                trace.max_tokens = prepared.max_tokens
                trace.count_only = count_only
            principal.check_access(prepared.model)  # before any limit is reserved
            plan = self.router.plan(principal, rec.session_id)
            request = UpstreamRequest(
                path="/v1/messages/count_tokens" if count_only else "/v1/messages",
                query=scope.get("query_string", b"") if door.forwards_query else b"",
                headers=prepared.headers,
                body=prepared.body,
                model=prepared.model,
                stream=prepared.stream,
                request_id=request_id,
                json=prepared.json,
                client_authorization=passthrough_authorization(scope),
            )
            cache = CachePlan.none()
            if not count_only:
                cache = self._cache_plan(scope, principal, prepared, plan, rec)
                if cache.read and await self._serve_from_cache(cache, request_id, rec, send):
                    return
            # A miss or no cache. Counting tokens costs nothing: rate limits only, no budget.
            if trace is not None:
                trace.admit_start = time.perf_counter()
            admission = await self.limiter.admit(
                principal,
                model=prepared.model,
                body_bytes=len(prepared.body),
                max_tokens=prepared.max_tokens,
                prices=principal.snapshot.prices,
                request_id=request_id,
                redis_failure=principal.workspace.redis_failure or None,
                count_only=count_only,
            )
            if trace is not None:
                trace.admit_end = time.perf_counter()
                trace.admission = admission
            extra = list(admission.headers)
            if rec.cache_status:
                extra.append((b"x-tollgate-cache", rec.cache_status.encode()))
            relay = Relay(door, principal, rec, send, extra, Exchange(), cache.recorder())
            sent_headers = await self._forward(relay, request, plan, receive)
            if sent_headers is not None and relay.recorder is not None:
                answered = Answered(cache.key, cache.ttl_s, relay.recorder, sent_headers)
        except (ClientDisconnected, GatewayError) as err:
            failure = err
        finally:
            # Handed forward, whatever way the request ended: the close-out owns its end.
            await self.closeout.close(rec, send, admission, answered, failure)

    def _cache_plan(
        self, scope: Scope, principal: Principal, prepared: Prepared, plan: Plan, rec: RequestRecord
    ) -> CachePlan:
        decision = decide(
            prepared.json, plan.cache_ttl_s, plan.cache_sampled, header(scope, CONTROL_HEADER)
        )
        rec.cache_status = decision.status
        if not (decision.read or decision.write):
            return CachePlan.none()
        key = cache_key(
            principal.workspace.name,
            prepared.model,
            prepared.json,
            prepared.headers,
            stream=prepared.stream,
            door=self.door.name,
        )
        return CachePlan(key, decision.read, decision.write, plan.cache_ttl_s)

    async def _serve_from_cache(
        self, cache: CachePlan, request_id: str, rec: RequestRecord, send: Send
    ) -> bool:
        entry = await self.cache.get(cache.key)
        if entry is None:
            return False
        rec.cache_status = HIT
        rec.status = entry.status
        rec.provider = "cache"
        rec.usage = entry.usage
        rec.model_served = entry.model
        rec.cost_saved_micros = entry.cost_micros  # the hit itself costs no upstream money
        rec.mark_first_byte()
        extra = [(b"x-tollgate-provider", b"cache"), (b"x-tollgate-attempts", b"0")]
        await replay(send, entry, replay_headers(entry, request_id, extra))
        return True

    async def _forward(
        self, relay: Relay, request: UpstreamRequest, plan: Plan, receive: Receive
    ) -> list[Header] | None:
        """Walk the plan and relay the answer: the headers sent with a complete, successful
        answer (for the cache), else None. If the client goes away: cancel everything, except a
        non-streamed Messages exchange under way, which is read to its end and metered (the
        upstream bills it anyway; see the module docstring)."""
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()
        rec = relay.rec
        exchange = relay.exchange
        meter_to_end = not request.stream and not request.path.endswith("count_tokens")

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if exchange.answered:
                        return  # the response is complete: nobody left early
                    gone.set()
                    exchange.client_gone = True
                    rec.client_disconnected = True
                    if not (meter_to_end and exchange.upstream_busy):
                        task.cancel()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        exchange.upstream_busy = True
        try:
            served = await self.attempts.run(request, plan, rec, exchange)
            return await relay.answer(served)
        except asyncio.CancelledError:
            if not gone.is_set():
                raise
            task.uncancel()
            rec.client_disconnected = True
            if not rec.status:
                rec.fail(499, "client_disconnected", "client disconnected")
            return None
        finally:
            exchange.upstream_busy = False
            watcher.cancel()


@dataclass(frozen=True, slots=True)
class CachePlan:
    key: str
    read: bool
    write: bool
    ttl_s: int

    @classmethod
    def none(cls) -> CachePlan:
        return cls("", False, False, 0)

    def recorder(self) -> CacheRecorder | None:
        return CacheRecorder() if self.write else None
