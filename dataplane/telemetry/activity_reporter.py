"""Sending the summed developer activity to the control plane (``Telemetry.ReportActivity``).

Every ``interval`` seconds what :class:`~dataplane.telemetry.activity.ActivityAggregator`
summed becomes one batch with a fresh ``batch_id``. A batch that fails is sent again, unchanged
(same id), until the control plane answers; it counts once there (idempotent on node id and
batch id). Meanwhile new figures keep summing into the next batch, so memory stays bounded by
the number of developers, not by the length of an outage. A batch the control plane refuses
as malformed (INVALID_ARGUMENT) is dropped and logged, so it cannot block every later one.

What is lost, by design: these are figures the client reported about itself and was already
answered 200 for. They live in memory only (never on disk, unlike usage events): if the process
dies, what was summed since the last acknowledged batch — a few seconds' worth, or everything
since the control plane became unreachable — is gone. :meth:`flush` tries once more at a
graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import grpc

from dataplane.telemetry.activity import ActivityAggregator
from dataplane.telemetry.metrics import TelemetryMetrics
from gwapi.v1 import telemetry_pb2

log = logging.getLogger("tollgate.telemetry")

SendActivity = Callable[
    [telemetry_pb2.ReportActivityRequest], Awaitable[telemetry_pb2.ReportActivityResponse]
]


class ActivityReporter:
    def __init__(
        self,
        aggregator: ActivityAggregator,
        send: SendActivity,
        node_id: str,
        metrics: TelemetryMetrics,
        *,
        interval: float = 5.0,
    ) -> None:
        self.aggregator = aggregator
        self.send = send
        self.node_id = node_id
        self.metrics = metrics
        self.interval = interval
        self._pending: telemetry_pb2.ReportActivityRequest | None = None
        self._failures = 0

    @property
    def pending_rows(self) -> int:
        held = len(self._pending.activity) if self._pending is not None else 0
        return held + self.aggregator.pending_rows

    async def run(self) -> None:
        """Report forever (cancel to stop, then call :meth:`flush`)."""
        while True:
            await asyncio.sleep(self.interval)
            await self.report_once()

    async def report_once(self) -> bool:
        """Send the pending batch, or a new one of what was summed; True when nothing is left
        undelivered (or there was nothing to send)."""
        if self._pending is None:
            rows = self.aggregator.take()
            if not rows:
                return True
            self._pending = telemetry_pb2.ReportActivityRequest(
                node_id=self.node_id, batch_id=uuid.uuid4().hex, activity=rows
            )
        batch = self._pending
        try:
            response = await self.send(batch)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                log.error(
                    "control plane refused activity batch %s (%d rows): %s; dropped",
                    batch.batch_id,
                    len(batch.activity),
                    exc.details(),
                )
                self.metrics.activity_batches.inc(("rejected",))
                self._pending = None
                return False
            return self._failed(exc)
        except Exception as exc:
            return self._failed(exc)
        self._pending = None
        self._failures = 0
        self.metrics.activity_batches.inc(("duplicate" if response.duplicate else "accepted",))
        return True

    def _failed(self, exc: BaseException) -> bool:
        self._failures += 1
        self.metrics.activity_batches.inc(("failed",))
        log_fn = (
            log.warning if self._failures in (1, 10) or self._failures % 100 == 0 else log.debug
        )
        log_fn(
            "could not report developer activity (%s); %d rows wait in memory",
            type(exc).__name__,
            self.pending_rows,
        )
        return False

    async def flush(self, timeout: float = 5.0) -> bool:
        """At shutdown: deliver the pending batch and what is summed; True if nothing is left."""
        try:
            async with asyncio.timeout(timeout):
                for _ in range(2):  # the pending batch, then the rows summed meanwhile
                    if not await self.report_once():
                        return False
                return self.pending_rows == 0
        except TimeoutError:
            return False
