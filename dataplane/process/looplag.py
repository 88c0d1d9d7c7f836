"""The event loop's lag, measured from inside: how late a periodic wake-up runs.

A task sleeps ``interval`` seconds at a time; each time it wakes it records how much later than
asked it ran (the time every other ready callback held the loop, plus the selector's timer
granularity, ~0.1 ms). That is the delay any request's next step waits for, so it is the figure
that says whether one worker is saturated. Cheap: one wake-up per ``interval`` (20 a second by
default), a few arithmetic operations each.

Exposed on ``/metrics`` (:meth:`LoopLag.register`) as a histogram of every sample
(``tollgate_event_loop_lag_seconds``: rates and quantiles over any window) and a gauge with the
largest sample of the last ``window`` samples (``tollgate_event_loop_lag_max_seconds``, ~10 s by
default: a stall between two scrapes stays visible).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from gwcommon.prometheus import Gauge, Histogram, Registry

LAG_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class LoopLag:
    """Samples the running loop's lag every ``interval`` s; keeps the last ``window`` samples."""

    def __init__(
        self,
        interval: float = 0.05,
        window: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or window < 1:
            raise ValueError("interval must be > 0 and window >= 1")
        self.interval = interval
        self.clock = clock
        self.recent: deque[float] = deque(maxlen=window)
        self.histogram = Histogram(
            "tollgate_event_loop_lag_seconds",
            "How late a periodic wake-up of the event loop runs (every sample).",
            (),
            LAG_BUCKETS,
        )

    def record(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.recent.append(lag)
        self.histogram.observe((), lag)

    def max_recent(self) -> float:
        """The largest lag among the last ``window`` samples (0 before the first)."""
        return max(self.recent, default=0.0)

    def register(self, registry: Registry) -> None:
        registry.add(self.histogram)
        registry.add(
            Gauge(
                "tollgate_event_loop_lag_max_seconds",
                "The largest event-loop lag among the recent samples (about the last 10 s).",
                (),
                lambda: [((), self.max_recent())],
            )
        )

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            due = self.clock() + self.interval
            await asyncio.sleep(self.interval)
            self.record(self.clock() - due)
