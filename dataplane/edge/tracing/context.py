"""One request's W3C trace context, and the timestamps its spans are built from at the end.

At the request's start (:func:`begin`) the client's ``traceparent``/``tracestate`` are parsed by
OpenTelemetry's own W3C propagator. A valid one is continued: same trace id, the request span's
parent is the client's span, its sampled flag and ``tracestate`` are kept. Otherwise (absent,
malformed, two ``traceparent`` headers) the request starts a new, sampled trace. The request
span's id is chosen here, up front, so that the attempts can name it as their parent.

Each attempt (:meth:`TraceContext.upstream`) gets its own span id and sends the provider
``traceparent: 00-{trace id}-{attempt span id}-{flags}`` (plus the client's ``tracestate``): the
provider's spans, if it records any, hang under that attempt. The client's own ``traceparent``
is never forwarded while tracing is on (``asgi.forwardable_headers`` drops it); with tracing off
it passes through untouched, as any other header.

Nothing here allocates a live span: the record holds ids and ``perf_counter`` instants, and
:mod:`.spans` turns them into finished spans once the request is over.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanContext, TraceFlags, TraceState, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from dataplane.asgi import Header
from dataplane.providers.base import UpstreamRequest

if TYPE_CHECKING:
    from dataplane.policy.limits import Admission

_PROPAGATOR = TraceContextTextMapPropagator()
_IDS = RandomIdGenerator()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


@dataclass(slots=True)
class AttemptTrace:
    """One upstream attempt: its span id (sent upstream) and ``perf_counter`` instants."""

    span_id: int
    provider_kind: str
    start: float
    end: float = 0.0  # 0 = never logged (the chain was cancelled during this attempt)


@dataclass(slots=True)
class TraceContext:
    trace_id: int
    span_id: int  # the request span's
    parent: SpanContext | None  # the client's span, or None: the request span is a root
    flags: TraceFlags
    state: TraceState | None
    wall_ns: int  # time.time_ns() at ``perf0``: perf_counter instants map onto the wall clock
    perf0: float
    max_tokens: int = 0
    count_only: bool = False
    admit_start: float = 0.0
    admit_end: float = 0.0  # 0 with admit_start set: refused (or failed) at admission
    admission: Admission | None = None
    attempts: list[AttemptTrace] = field(default_factory=list)
    relay_end: float = 0.0  # when the served attempt's answer was fully relayed
    _state_header: bytes = b""

    @property
    def sampled(self) -> bool:
        return self.flags.sampled

    def ns(self, perf: float) -> int:
        """A ``perf_counter`` instant of this request as Unix nanoseconds."""
        return self.wall_ns + int((perf - self.perf0) * 1e9)

    def upstream(self, request: UpstreamRequest, provider_kind: str) -> UpstreamRequest:
        """The request for one attempt, carrying that attempt's ``traceparent``."""
        span_id = _IDS.generate_span_id()
        self.attempts.append(AttemptTrace(span_id, provider_kind, time.perf_counter()))
        parent = f"00-{self.trace_id:032x}-{span_id:016x}-{int(self.flags):02x}".encode()
        headers: tuple[Header, ...] = ((b"traceparent", parent),)
        if self._state_header:
            headers += ((b"tracestate", self._state_header),)
        return dataclasses.replace(request, trace_headers=headers)

    def attempt_done(self, now: float) -> None:
        if self.attempts:
            self.attempts[-1].end = now


def new_span_id() -> int:
    return _IDS.generate_span_id()


def begin(headers: list[Header], perf0: float) -> TraceContext:
    """The trace context of a request whose ASGI headers (lower-case names) are ``headers``."""
    parents: list[str] = []
    states: list[str] = []
    for k, v in headers:
        if k == b"traceparent":
            parents.append(v.decode("latin-1"))
        elif k == b"tracestate":
            states.append(v.decode("latin-1"))
    wall_ns = time.time_ns() - int((time.perf_counter() - perf0) * 1e9)
    if len(parents) == 1:
        carrier = (
            {"traceparent": parents, "tracestate": states} if states else {"traceparent": parents}
        )
        parent = get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
        if parent.is_valid:
            state = parent.trace_state or None
            return TraceContext(
                trace_id=parent.trace_id,
                span_id=_IDS.generate_span_id(),
                parent=parent,
                flags=parent.trace_flags,
                state=state,
                wall_ns=wall_ns,
                perf0=perf0,
                _state_header=state.to_header().encode() if state else b"",
            )
    return TraceContext(
        trace_id=_IDS.generate_trace_id(),
        span_id=_IDS.generate_span_id(),
        parent=None,
        flags=_SAMPLED,
        state=None,
        wall_ns=wall_ns,
        perf0=perf0,
    )
