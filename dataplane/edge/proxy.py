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

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.asgi import (
    DROP_REQUEST,
    DROP_REQUEST_TRACED,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    forwardable_headers,
    read_body,
)
from dataplane.edge.attempts import Attempts
from dataplane.edge.closeout import Answered, CloseOut
from dataplane.edge.doors.base import Door
from dataplane.edge.relay import Exchange, Relay
from dataplane.errors import GatewayError, new_request_id
from dataplane.metering.bodylog import BodyLog
from dataplane.metering.record import RequestRecord, parse_metadata
from dataplane.policy.auth import PRINCIPAL, REQUEST_ID, Principal, passthrough_authorization
from dataplane.policy.cache import CONTROL_HEADER, NO_CACHE, CacheBackend, consult_cache
from dataplane.policy.limits import Limiter
from dataplane.policy.reservation import Admission
from dataplane.policy.routing import Router
from dataplane.providers.base import UpstreamRequest

if TYPE_CHECKING:  # imported only when tracing is on (dataplane.process.server)
    from dataplane.edge.tracing.spans import Tracer

# The request headers the handler itself reads, each once (the first value, as ``asgi.header``).
_SESSION_ID = b"x-claude-code-session-id"
_USER_AGENT = b"user-agent"
_METADATA = b"x-tollgate-metadata"
_AUTHORIZATION = b"authorization"
_VIRTUAL_KEY = b"x-tollgate-key"
_READ = frozenset(
    {_SESSION_ID, _USER_AGENT, _METADATA, CONTROL_HEADER, _AUTHORIZATION, _VIRTUAL_KEY}
)


@dataclass(frozen=True, slots=True)
class ClientHeaders:
    """What the request path needs from the client's headers, read in one pass at the start;
    a value is None when the header is absent."""

    session_id: str
    user_agent: str
    metadata: bytes | None
    cache_control: bytes | None
    authorization: bytes | None
    virtual_key: bytes | None

    @classmethod
    def read(cls, scope: Scope) -> ClientHeaders:
        found: dict[bytes, bytes] = {}
        for k, v in scope["headers"]:
            if k in _READ and k not in found:
                found[k] = v
        return cls(
            session_id=found.get(_SESSION_ID, b"").decode("latin-1"),
            user_agent=found.get(_USER_AGENT, b"").decode("latin-1"),
            metadata=found.get(_METADATA),
            cache_control=found.get(CONTROL_HEADER),
            authorization=found.get(_AUTHORIZATION),
            virtual_key=found.get(_VIRTUAL_KEY),
        )


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
        self._drop = DROP_REQUEST if tracer is None else DROP_REQUEST_TRACED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal = scope[PRINCIPAL]
        request_id: str = scope.get(REQUEST_ID) or new_request_id()
        client = ClientHeaders.read(scope)
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
        rec.session_id = client.session_id
        rec.user_agent = client.user_agent
        workspace = principal.workspace
        if workspace.log_bodies != "none":  # the only cost of request logging when it is off
            rec.log = BodyLog(workspace.log_bodies, workspace.log_body_max_bytes, scope["headers"])
            send = rec.log.wrap(send)
        admission: Admission | None = None
        answered: Answered | None = None
        failure: GatewayError | ClientDisconnected | None = None
        try:
            rec.metadata = parse_metadata(client.metadata)
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
            authorization = passthrough_authorization(client.authorization, client.virtual_key)
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
                betas=prepared.betas,
                client_authorization=authorization,
                max_tokens=prepared.max_tokens,
            )
            cache = NO_CACHE
            if not count_only:  # counting tokens is free and never cached
                cache = await consult_cache(
                    self.cache,
                    rec,
                    send,
                    request,
                    workspace=principal.workspace.name,
                    door=door.name,
                    ttl_s=plan.cache_ttl_s,
                    sampled=plan.cache_sampled,
                    control=client.cache_control,
                )
                if cache.served:
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
                extra.append((CONTROL_HEADER, rec.cache_status.encode()))
            relay = Relay(door, principal, rec, send, extra, Exchange(), cache.recorder)
            sent_headers = await self.attempts.forward(relay, request, plan, receive)
            if sent_headers is not None and relay.recorder is not None:
                answered = Answered(cache.key, cache.ttl_s, relay.recorder, sent_headers)
        except (ClientDisconnected, GatewayError) as err:
            failure = err
        finally:
            # Handed forward, whatever way the request ended: the close-out owns its end.
            await self.closeout.close(rec, send, admission, answered, failure)
