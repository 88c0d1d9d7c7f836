"""The end of every API request, in one fixed order, whatever way the request ended.

The handler (:class:`dataplane.edge.proxy.ApiHandler`) hands the request over here once the
answer is out, or once it failed, and is then done with it. In order:

1. a failure before any answer is recorded, and written to the client in its door's format
   (unless the client has gone, which is itself recorded as a 499: nobody is left to tell);
2. a complete, successful answer is stored in the response cache, in the background (off the
   request's path);
3. the :class:`~dataplane.metering.record.RequestRecord` becomes one usage event, handed to the
   reporter (:mod:`dataplane.sync.reporter`) **before** the counters are touched: the client has
   its answer, and what the data plane owes the ledger must not wait for a counter round trip
   (a crash in between would lose the event, never the counters' consistency: their lease ends);
4. the reservation is settled to what the answer cost (a disconnect included), or released when
   nothing was served (:class:`~dataplane.policy.reservation.Admission`, bound to its counters);
5. with tracing on, the record becomes the request's spans.

Steps 3–5 run even when writing the failure (1.) raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.asgi import ClientDisconnected, Header, Send, send_error_body
from dataplane.clienttext import BadModel
from dataplane.edge.doors.base import Door
from dataplane.errors import GatewayError
from dataplane.metering.record import RequestRecord
from dataplane.policy.cache import CacheBackend, CacheRecorder
from dataplane.policy.reservation import Admission

if TYPE_CHECKING:  # imported only when tracing is on (dataplane.process.server)
    from dataplane.edge.tracing.spans import Tracer

# The request path's own logger name, as before the close-out had a module of its own.
log = logging.getLogger("tollgate.proxy")


@dataclass(frozen=True, slots=True)
class Answered:
    """An answer relayed whole and successfully, with what the response cache needs of it."""

    key: str  # the cache key the request was planned with
    ttl_s: int
    recorder: CacheRecorder  # the exact bytes the client got
    headers: list[Header]  # the headers it got with them


class CloseOut:
    """Closes every request of one door's handler (see the module docstring for the order)."""

    def __init__(
        self,
        door: Door,
        cache: CacheBackend,
        record_sink: Callable[[RequestRecord], None],
        tracer: Tracer | None,
    ) -> None:
        self.door = door
        self.cache = cache
        self.sink = record_sink
        self.tracer = tracer
        self._background: set[asyncio.Task[None]] = set()

    async def close(
        self,
        rec: RequestRecord,
        send: Send,
        admission: Admission | None,
        answered: Answered | None = None,
        failure: GatewayError | ClientDisconnected | None = None,
    ) -> None:
        """End the request: ``answered`` is set for a complete, successful relayed answer,
        ``failure`` for a refusal or error raised before any answer was sent, or the client's
        leaving that interrupted the request (reading its body, between attempts); ``admission`` is
        None when the request never reached the limits (refused before, or answered from the
        cache)."""
        try:
            if failure is not None:
                await self._fail(rec, send, failure)
            elif answered is not None:
                self._store(answered, rec)
        finally:
            self.sink(rec)
            if admission is not None:
                await self._settle(admission, rec)
            if self.tracer is not None:
                self.tracer.finish(rec)

    async def _fail(
        self, rec: RequestRecord, send: Send, err: GatewayError | ClientDisconnected
    ) -> None:
        if isinstance(err, ClientDisconnected):
            rec.client_disconnected = True
            rec.fail(499, "client_disconnected", "client disconnected before the request completed")
            return
        if isinstance(err, BadModel):  # refused, and recorded with a cleaned, cut copy
            rec.model_requested = err.model
        rec.fail(err.status, err.error_type, err.message)
        if not rec.client_disconnected:  # nobody to tell when the client has gone
            body, more = self.door.error_body(
                err.status, err.error_type, err.message, rec.request_id
            )
            await send_error_body(send, err.status, body, [*err.headers, *more], rec.request_id)

    def _store(self, answered: Answered, rec: RequestRecord) -> None:
        """Keep a complete, successful answer for the route's TTL (off the request's path)."""
        if rec.status != 200 or rec.error_type:
            return
        cost = rec.priced.cost_micros if rec.priced is not None else 0
        entry = answered.recorder.entry(200, answered.headers, rec.model_served, rec.usage, cost)
        if entry is None:
            return
        task = asyncio.create_task(self.cache.put(answered.key, entry, answered.ttl_s))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle(self, admission: Admission, rec: RequestRecord) -> None:
        """Settle the reservation to what the answer cost (a disconnect included), or release
        it when nothing was served (an upstream error, a failure before any usage was seen)."""
        try:
            if rec.priced is not None:
                u = rec.usage
                await admission.settle(rec.priced.cost_micros, u.prompt_tokens, u.output_tokens)
            else:
                await admission.release()
        except Exception:  # never let bookkeeping break a response that is already out
            log.exception("request %s: settling its reservation failed", rec.request_id)
