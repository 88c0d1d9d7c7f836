"""Prometheus metrics for one data plane (registry: :mod:`gwcommon.prometheus`).

Everything is recorded once per request, at its end, from the :class:`RequestRecord` handed to
the usage sink (:meth:`Metrics.observe`), plus a counter for refusals the auth middleware answers
before any record exists. Gauges that describe state (breakers, snapshot version, spool backlog)
are read at scrape time through callbacks. ``GET /metrics`` renders the text exposition format.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from dataplane.edge.signin.metrics import SignInMetrics
from dataplane.metering.record import RequestRecord
from gwcommon.prometheus import Counter, Gauge, Histogram, Registry

LATENCY_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
TTFB_BUCKETS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if status else "unknown"


def refusal_reason(status: int, error_type: str, message: str) -> str:
    """Why the gateway itself refused a request (not an upstream's answer)."""
    if status == 401:
        return "auth"
    if status == 403:
        return "permission"
    if status == 413:
        return "too_large"
    if status == 429:
        return "budget" if "Budget of" in message else "rate_limit"
    if status == 400:
        return "client_version" if "claude update" in message else "invalid_request"
    if status == 499:
        return "client_disconnected"
    return error_type or "other"


class Metrics:
    """The data plane's metrics; :meth:`observe` is the per-request hot path (a few dict ops)."""

    def __init__(
        self,
        breaker_states: Callable[[], dict[str, str]] = dict,
        snapshot_version: Callable[[], str | None] = lambda: None,
        backlog: Callable[[], int] = lambda: 0,
        # (disk refusing writes 0/1, events held in memory only, events dropped since start)
        spool_state: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0),
        quarantined: Callable[[], int] = lambda: 0,
        restarts: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self.registry = r = Registry()
        ws_prov = ("workspace", "provider")
        self.requests = r.add(
            Counter(
                "tollgate_requests_total",
                "Requests served, by workspace, provider and status class.",
                ("workspace", "provider", "status"),
            )
        )
        self.latency = r.add(
            Histogram(
                "tollgate_request_duration_seconds",
                "Request latency, arrival to end of response.",
                ws_prov,
                LATENCY_BUCKETS,
            )
        )
        self.ttfb = r.add(
            Histogram(
                "tollgate_time_to_first_byte_seconds",
                "Time from arrival to the first response byte sent to the client.",
                ws_prov,
                TTFB_BUCKETS,
            )
        )
        self.tokens = r.add(
            Counter(
                "tollgate_tokens_total",
                "Tokens metered, by type (input, output, cache_read, cache_creation).",
                ("workspace", "provider", "type"),
            )
        )
        self.cost = r.add(
            Counter(
                "tollgate_cost_micros_total",
                "Metered cost in micro-dollars (1e-6 USD).",
                ws_prov,
            )
        )
        self.refusals = r.add(
            Counter(
                "tollgate_refusals_total",
                "Requests the gateway refused itself, by reason.",
                ("workspace", "reason"),
            )
        )
        self.attempts = r.add(
            Counter(
                "tollgate_upstream_attempts_total",
                "Upstream attempts, by provider.",
                ("provider",),
            )
        )
        self.upstream_errors = r.add(
            Counter(
                "tollgate_upstream_errors_total",
                "Upstream attempts that failed (no response or an error status), by provider.",
                ("provider", "status"),
            )
        )
        states = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
        r.add(
            Gauge(
                "tollgate_breaker_state",
                "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
                ("target",),
                lambda: [((t,), states.get(s, 2.0)) for t, s in breaker_states().items()],
            )
        )
        r.add(
            Gauge(
                "tollgate_snapshot_info",
                "The configuration snapshot this data plane serves (value 1).",
                ("version",),
                lambda: [((v,), 1.0)] if (v := snapshot_version()) is not None else [],
            )
        )
        r.add(
            Gauge(
                "tollgate_usage_backlog",
                "Usage events not yet acknowledged by the control plane.",
                (),
                lambda: [((), float(backlog()))],
            )
        )
        r.add(
            Gauge(
                "tollgate_usage_spool_write_failing",
                "1 while the disk refuses usage-spool writes (full, read-only), else 0.",
                (),
                lambda: [((), float(spool_state()[0]))],
            )
        )
        r.add(
            Gauge(
                "tollgate_usage_memory_only",
                "Unacknowledged usage events the disk refused, held only in memory.",
                (),
                lambda: [((), float(spool_state()[1]))],
            )
        )
        r.add(
            Gauge(
                "tollgate_usage_dropped",
                "Usage events lost since start (memory full while the disk refused them).",
                (),
                lambda: [((), float(spool_state()[2]))],
            )
        )
        self.signin = SignInMetrics(r)  # sign-in steps, bearer-token refusals, rate limits
        r.add(
            Gauge(
                "tollgate_usage_quarantined",
                "Usage events the control plane refused for good, set aside in the spool's "
                "rejected.log (not in the ledger: inspect them).",
                (),
                lambda: [((), float(quarantined()))],
            )
        )
        r.add(
            Gauge(
                "tollgate_task_restarts",
                "Times a background loop (usage-reporter, snapshot-watch) died and was "
                "restarted since start.",
                ("task",),
                lambda: [((t,), float(n)) for t, n in sorted(restarts().items())],
            )
        )
        # What GET /metrics answers: this registry, or (one worker of several) every worker's,
        # gathered by dataplane.process.metrics_peers.
        self.scrape: Callable[[], Awaitable[bytes]] = self._render_async
        started = time.time()
        r.add(
            Gauge(
                "tollgate_start_time_seconds",
                "When this data plane started (Unix time).",
                (),
                lambda: [((), started)],
            )
        )

    def observe(self, rec: RequestRecord) -> None:
        ws, provider = rec.workspace, rec.provider
        self.requests.inc((ws, provider, status_class(rec.status)))
        self.latency.observe((ws, provider), time.perf_counter() - rec.started)
        if rec.ttfb_s is not None:
            self.ttfb.observe((ws, provider), rec.ttfb_s)
        u = rec.usage
        for kind, n in (
            ("input", u.input_tokens),
            ("output", u.output_tokens),
            ("cache_read", u.cache_read_input_tokens),
            ("cache_creation", u.cache_creation_input_tokens),
        ):
            if n:
                self.tokens.inc((ws, provider, kind), n)
        if rec.priced is not None and rec.priced.cost_micros:
            self.cost.inc((ws, provider), rec.priced.cost_micros)
        if rec.error_type and not rec.attempt_log and rec.status:
            self.refusals.inc((ws, refusal_reason(rec.status, rec.error_type, rec.error_message)))
        for attempt in rec.attempt_log:
            if attempt.outcome == "skipped_open_breaker":
                continue
            self.attempts.inc((attempt.provider,))
            if attempt.outcome in ("retried", "fell_back", "failed"):
                status = str(attempt.status) if attempt.status else "none"
                self.upstream_errors.inc((attempt.provider, status))

    def auth_refused(self, workspace: str, status: int, error_type: str, message: str) -> None:
        """A refusal the auth middleware answers before any request record exists."""
        self.refusals.inc((workspace, refusal_reason(status, error_type, message)))

    def sink(self, inner: Callable[[RequestRecord], None]) -> Callable[[RequestRecord], None]:
        """Wrap the usage sink so every finished request is observed, then reported."""

        def record(rec: RequestRecord) -> None:
            try:
                self.observe(rec)
            finally:
                inner(rec)

        return record

    def render(self) -> bytes:
        return self.registry.render()

    async def _render_async(self) -> bytes:
        return self.registry.render()
