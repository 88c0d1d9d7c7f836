"""Prometheus metrics of the telemetry path, registered into the data plane's registry.

Labels are bounded: signals (3), reasons (a fixed few), destinations (configured by the admin).
"""

from __future__ import annotations

from collections.abc import Callable

from gwcommon.prometheus import Counter, Gauge, Registry


class TelemetryMetrics:
    def __init__(
        self,
        registry: Registry | None = None,
        queued: Callable[[], dict[str, int]] = dict,
        activity_pending: Callable[[], int] = lambda: 0,
    ) -> None:
        r = registry or Registry()
        self.received = r.add(
            Counter(
                "tollgate_otlp_received_total",
                "OTLP exports accepted from clients, by signal and encoding.",
                ("signal", "encoding"),
            )
        )
        self.rejected = r.add(
            Counter(
                "tollgate_otlp_rejected_total",
                "OTLP exports refused (malformed, too large, unsupported), by signal and reason.",
                ("signal", "reason"),
            )
        )
        self.discarded = r.add(
            Counter(
                "tollgate_otlp_discarded_total",
                "OTLP exports answered 200 and discarded: no destination takes the signal.",
                ("signal",),
            )
        )
        self.forwarded = r.add(
            Counter(
                "tollgate_otlp_forwarded_total",
                "OTLP exports delivered to a destination (2xx), by destination and signal.",
                ("destination", "signal"),
            )
        )
        self.failed = r.add(
            Counter(
                "tollgate_otlp_forward_failed_total",
                "OTLP exports a destination did not take after every retry, by destination.",
                ("destination", "signal"),
            )
        )
        self.dropped = r.add(
            Counter(
                "tollgate_otlp_dropped_total",
                "OTLP exports dropped before sending (queue full, credentials not received yet, "
                "shutdown), by destination and reason.",
                ("destination", "reason"),
            )
        )
        self.activity_batches = r.add(
            Counter(
                "tollgate_activity_batches_total",
                "Developer-activity batches sent to the control plane, by outcome.",
                ("outcome",),
            )
        )
        self.activity_dropped = r.add(
            Counter(
                "tollgate_activity_dropped_total",
                "Activity figures dropped (too many series or developers held in memory).",
                ("reason",),
            )
        )
        r.add(
            Gauge(
                "tollgate_otlp_queue",
                "OTLP exports waiting to be forwarded, by destination.",
                ("destination",),
                lambda: [((name,), float(n)) for name, n in queued().items()],
            )
        )
        r.add(
            Gauge(
                "tollgate_activity_pending",
                "Developer-activity rows not yet acknowledged by the control plane.",
                (),
                lambda: [((), float(activity_pending()))],
            )
        )
