"""Prometheus ``/metrics`` for the control plane, on its own port (``--metrics-listen``).

Serves watchers (data planes connected by ``Discovery.Watch``), the snapshot version and how
long building it took, usage ingest: batches, events and lag (event time to ingest), and the
fleet: leadership, whether the bus listens, notices delivered. A
minimal asyncio HTTP/1.1 responder: ``GET /metrics`` answers the text format, anything else 404;
one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from gwapi.v1 import telemetry_pb2 as tpb
from gwcommon.prometheus import CONTENT_TYPE, Counter, Gauge, Histogram, Registry

LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
BUILD_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class ControlPlaneMetrics:
    def __init__(
        self,
        watchers: Callable[[], int] = lambda: 0,
        snapshot_version: Callable[[], str] = lambda: "",
    ) -> None:
        self.registry = r = Registry()
        r.add(
            Gauge(
                "tollgate_cp_watchers",
                "Data planes connected by Discovery.Watch.",
                (),
                lambda: [((), float(watchers()))],
            )
        )
        r.add(
            Gauge(
                "tollgate_cp_snapshot_info",
                "The snapshot version this control plane publishes (value 1).",
                ("version",),
                lambda: [((v,), 1.0)] if (v := snapshot_version()) else [],
            )
        )
        self.build_seconds = r.add(
            Histogram(
                "tollgate_cp_snapshot_build_seconds",
                "Time to build a snapshot from the database.",
                (),
                BUILD_BUCKETS,
            )
        )
        self.batches = r.add(
            Counter("tollgate_cp_ingest_batches_total", "Usage batches received.", ())
        )
        self.events = r.add(
            Counter(
                "tollgate_cp_ingest_events_total",
                "Usage events received, by result (accepted, duplicate).",
                ("result",),
            )
        )
        self.lag = r.add(
            Histogram(
                "tollgate_cp_ingest_lag_seconds",
                "From a request's start on a data plane to its usage event being ingested.",
                (),
                LAG_BUCKETS,
            )
        )

    def fleet(
        self,
        leader: Callable[[], bool],
        listening: Callable[[], bool],
        notices: Callable[[], int],
    ) -> None:
        """The fleet's gauges (:mod:`controlplane.fleet`), once it is built."""
        r = self.registry
        r.add(
            Gauge(
                "tollgate_cp_fleet_leader",
                "1 if this replica runs the once-per-fleet jobs (purges, budget alerts).",
                (),
                lambda: [((), float(leader()))],
            )
        )
        r.add(
            Gauge(
                "tollgate_cp_fleet_bus_up",
                "1 while this replica hears the other replicas' changes (PostgreSQL LISTEN).",
                (),
                lambda: [((), float(listening()))],
            )
        )
        r.add(
            Gauge(
                "tollgate_cp_fleet_notices",
                "Fleet bus notices delivered to this replica since it started (a counter).",
                (),
                lambda: [((), float(notices()))],
            )
        )

    def snapshot_built(self, seconds: float) -> None:
        self.build_seconds.observe((), seconds)

    def ingested(self, request: tpb.ReportUsageRequest, response: tpb.ReportUsageResponse) -> None:
        self.batches.inc()
        self.events.inc(("accepted",), response.accepted)
        self.events.inc(("duplicate",), response.duplicates)
        now_ms = time.time() * 1000
        for ev in request.events:
            if ev.time_ms:
                self.lag.observe((), max(0.0, (now_ms - ev.time_ms) / 1000))

    def render(self) -> bytes:
        return self.registry.render()


class MetricsServer:
    """``GET /metrics`` over plain HTTP on ``listen`` (HOST:PORT; port 0 picks one)."""

    def __init__(self, metrics: ControlPlaneMetrics, listen: str) -> None:
        self.metrics = metrics
        self.listen = listen
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        host, _, port = self.listen.rpartition(":")
        self._server = await asyncio.start_server(self._handle, host.strip("[]"), int(port))
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = head.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method in (b"GET", b"HEAD") and path == b"/metrics":
                status, ctype, body = b"200 OK", CONTENT_TYPE, self.metrics.render()
            else:
                status, ctype, body = b"404 Not Found", b"text/plain", b"not found: try /metrics\n"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype
                + b"\r\ncontent-length: " + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n" + (b"" if method == b"HEAD" else body)
            )  # fmt: skip
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
