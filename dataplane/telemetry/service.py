"""The telemetry parts of one data plane, built and run together.

:class:`TelemetryService` owns the forwarder, the activity aggregator and its reporter, their
metrics (registered into the data plane's Prometheus registry) and the ASGI handler the app
mounts at ``/v1/{metrics,logs,traces}``. :meth:`start` starts the background reporting loop;
:meth:`stop` gives queued exports and the last activity a bounded time to leave.
"""

from __future__ import annotations

import asyncio
import contextlib

from dataplane.telemetry.activity import ActivityAggregator
from dataplane.telemetry.activity_reporter import ActivityReporter, SendActivity
from dataplane.telemetry.endpoint import DEFAULT_MAX_BODY, OtlpHandler
from dataplane.telemetry.forwarder import Forwarder
from dataplane.telemetry.metrics import TelemetryMetrics
from gwcommon.prometheus import Registry


class TelemetryService:
    def __init__(
        self,
        send_activity: SendActivity,
        node_id: str,
        registry: Registry | None = None,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        report_interval: float = 5.0,
    ) -> None:
        self.metrics = TelemetryMetrics(
            registry,
            queued=lambda: self.forwarder.queued(),
            activity_pending=lambda: self.reporter.pending_rows,
        )
        self.forwarder = Forwarder(self.metrics)
        self.aggregator = ActivityAggregator(self.metrics)
        self.reporter = ActivityReporter(
            self.aggregator, send_activity, node_id, self.metrics, interval=report_interval
        )
        self.handler = OtlpHandler(self.forwarder, self.aggregator, self.metrics, max_body=max_body)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self.reporter.run(), name="activity-reporter"
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """After the HTTP server stopped: forward what is queued, report the last activity."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(self.forwarder.aclose(timeout / 2), self.reporter.flush(timeout / 2))
