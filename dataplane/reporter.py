"""Usage reporting: a bounded in-memory queue, the disk spool, batches to the control plane.

The request path only calls :meth:`Reporter.record` (an append to a deque). A background task
moves queued events to the spool (durable) every ``interval`` seconds, then sends unacknowledged
events in batches; the control plane's ``acked_seq`` lets the spool forget them. With the control
plane down, events accumulate in the spool and are replayed in order when it returns; the control
plane's ingest is idempotent on request id, so a replay after a lost acknowledgement counts
nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from dataplane.events import RequestRecord
from dataplane.spool import Spool
from gwapi.v1 import telemetry_pb2

log = logging.getLogger("tollgate.reporter")

# Sends a batch; returns the acked sequence. Raises on any failure (the batch is retried).
SendBatch = Callable[[telemetry_pb2.ReportUsageRequest], Awaitable[int]]


class Reporter:
    def __init__(
        self,
        spool: Spool,
        send_batch: SendBatch,
        node_id: str,
        *,
        interval: float = 0.2,
        batch_size: int = 500,
        max_queue: int = 200_000,
    ) -> None:
        self.spool = spool
        self.send_batch = send_batch
        self.node_id = node_id
        self.interval = interval
        self.batch_size = batch_size
        self._queue: deque[bytes] = deque()
        self._max_queue = max_queue
        self._wake = asyncio.Event()
        self.dropped = 0
        self._backoff = 0.0
        # The spool operation in progress (append, ack) in its worker thread. A cancelled run()
        # leaves that thread running: flush() must wait for it, not race it on the same spool.
        self._spool_io: asyncio.Future[Any] | None = None

    def record(self, rec: RequestRecord) -> None:
        """Hot path: queue one finished request's usage event. Never blocks, never raises."""
        try:
            payload = rec.to_event().SerializeToString()
        except Exception:  # a broken record must not break the response that produced it
            log.exception("could not encode the usage event of %s", rec.request_id)
            return
        if len(self._queue) >= self._max_queue:
            # Only reachable when the disk itself stalls for a long time; say so loudly.
            self.dropped += 1
            log.error("usage queue full: dropped the event of %s", rec.request_id)
            return
        self._queue.append(payload)

    async def run(self) -> None:
        """Flush forever (cancel to stop; call :meth:`flush` afterwards for a final attempt)."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self._persist()
            if self._backoff:
                await asyncio.sleep(self._backoff)
            await self._send_pending()

    async def _spool(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one spool operation in a worker thread, never two at once."""
        while self._spool_io is not None and not self._spool_io.done():
            await asyncio.wait([self._spool_io])
        self._spool_io = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        return await asyncio.shield(self._spool_io)

    async def _persist(self) -> None:
        if not self._queue:
            return
        batch = list(self._queue)
        self._queue.clear()
        await self._spool(self.spool.append, batch)

    async def _send_pending(self) -> bool:
        """Send everything unacknowledged; False if the control plane could not be reached."""
        while True:
            records = self.spool.pending(self.batch_size)
            if not records:
                self._backoff = 0.0
                return True
            request = telemetry_pb2.ReportUsageRequest(
                node_id=self.node_id,
                events=[telemetry_pb2.UsageEvent.FromString(p) for _, p in records],
                last_seq=records[-1][0],
            )
            try:
                acked = await self.send_batch(request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    await self._isolate(records)
                    continue
                self._retry_later(exc)
                return False
            except Exception as exc:
                self._retry_later(exc)
                return False
            await self._spool(self.spool.ack, acked)
            if acked < records[-1][0]:
                return False

    def _retry_later(self, exc: BaseException) -> None:
        self._backoff = min(5.0, max(0.2, self._backoff * 2)) * random.uniform(0.8, 1.2)
        log.debug("usage report failed (%s); %d events wait in the spool", exc, self.spool.backlog)

    async def _isolate(self, records: list[tuple[int, bytes]]) -> None:
        """The control plane refused a batch as malformed: resend one by one, and set aside
        (``rejected.log`` beside the spool, never deleted) only the events it refuses alone, so
        one bad event cannot block every later one."""
        for seq, payload in records:
            request = telemetry_pb2.ReportUsageRequest(
                node_id=self.node_id,
                events=[telemetry_pb2.UsageEvent.FromString(payload)],
                last_seq=seq,
            )
            try:
                await self.send_batch(request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                log.error(
                    "control plane refused usage event #%d: %s; kept in rejected.log",
                    seq,
                    exc.details(),
                )
                await self._spool(self.spool.reject, seq, payload)
            await self._spool(self.spool.ack, seq)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Persist the queue and try once to deliver everything; True if nothing is left."""
        try:
            async with asyncio.timeout(timeout):
                await self._persist()
                return await self._send_pending()
        except TimeoutError:
            return False

    @property
    def backlog(self) -> int:
        return len(self._queue) + self.spool.backlog
