"""Forwarding OTLP exports to collectors, in the background, never slowing a request.

Contract:

* :meth:`Forwarder.submit` is called on the request path: it appends to the destination's
  queue and returns (no I/O, no await). A full queue (``max_queue`` exports, or the forwarder's
  ``max_bytes`` across all queues) drops the export and counts it
  (``tollgate_otlp_dropped_total{reason="queue_full"}``).
* One sender task per destination (started on its first export) POSTs each export, protobuf,
  to ``{url}/v1/{signal}`` with the destination's headers, so a slow or dead collector only
  holds up its own queue. 2xx is delivered; 429, 5xx, 408 and connection errors are retried
  (``retries`` more times, exponential backoff with jitter, ``Retry-After`` honoured up to
  ``max_backoff_s``); any other answer, or the last retry, counts as failed.
* A destination whose header values have not been received yet (a data plane started from its
  disk cache) gets nothing: the export is dropped (``reason="no_credentials"``) rather than
  sent without its API key.
* Header values never appear in a log line or an error.
* :meth:`Forwarder.aclose` gives queued exports ``timeout`` seconds, then drops the rest
  (``reason="shutdown"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

import aiohttp

from dataplane.telemetry.destinations import Destination
from dataplane.telemetry.metrics import TelemetryMetrics
from dataplane.telemetry.otlp import PROTOBUF_TYPE, Signal

log = logging.getLogger("tollgate.telemetry")

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
# Marks an export a Tollgate data plane forwarded: a data plane receiving one (a destination that
# points back at a gateway) discards it instead of forwarding it again, so no loop can form.
FORWARDED_HEADER = "x-tollgate-forwarded"


@dataclass(frozen=True, slots=True)
class Export:
    destination: Destination
    signal: Signal
    payload: bytes  # protobuf, identity stamped


class Forwarder:
    def __init__(
        self,
        metrics: TelemetryMetrics,
        *,
        max_queue: int = 1000,
        max_bytes: int = 64 * 1024 * 1024,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.metrics = metrics
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._queues: dict[str, deque[Export]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._bytes = 0
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._logged_failure: dict[str, float] = {}

    # -- the request path -----------------------------------------------------------------------

    def submit(self, signal: Signal, payload: bytes, destinations: tuple[Destination, ...]) -> None:
        """Queue ``payload`` for every destination (never blocks, never raises)."""
        for dest in destinations:
            if dest.headers_missing:
                self.metrics.dropped.inc((dest.name, "no_credentials"))
                continue
            queue = self._queues.setdefault(dest.name, deque())
            if (
                self._closing
                or len(queue) >= self.max_queue
                or self._bytes + len(payload) > self.max_bytes
            ):
                self.metrics.dropped.inc((dest.name, "shutdown" if self._closing else "queue_full"))
                continue
            queue.append(Export(dest, signal, payload))
            self._bytes += len(payload)
            self._ensure_sender(dest.name)

    def queued(self) -> dict[str, int]:
        return {name: len(q) for name, q in self._queues.items() if q}

    # -- senders --------------------------------------------------------------------------------

    def _ensure_sender(self, name: str) -> None:
        wake = self._wake.setdefault(name, asyncio.Event())
        wake.set()
        task = self._tasks.get(name)
        if task is None or task.done():
            self._tasks[name] = asyncio.get_running_loop().create_task(
                self._sender(name), name=f"otlp-forward-{name}"
            )

    async def _sender(self, name: str) -> None:
        queue = self._queues[name]
        wake = self._wake[name]
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            export = queue[0]
            try:
                await self._deliver(export)
            except asyncio.CancelledError:
                self.metrics.dropped.inc((name, "shutdown"))
                raise
            finally:
                queue.popleft()
                self._bytes -= len(export.payload)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, limit_per_host=8),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        return self._session

    async def _deliver(self, export: Export) -> None:
        dest = export.destination
        headers = {"Content-Type": PROTOBUF_TYPE.decode(), "User-Agent": "tollgate"}
        headers.update(dest.headers)
        headers[FORWARDED_HEADER] = "1"
        url = dest.endpoint(export.signal)
        for attempt in range(self.retries + 1):
            status = 0
            retry_after = 0.0
            try:
                async with self._client().post(
                    url, data=export.payload, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    await response.read()
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}"
            else:
                if 200 <= status < 300:
                    self.metrics.forwarded.inc((dest.name, export.signal))
                    return
                problem = f"HTTP {status}"
                if status not in RETRYABLE:
                    break
            if attempt < self.retries:
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                delay = max(delay * random.uniform(0.8, 1.2), min(retry_after, self.max_backoff_s))
                await asyncio.sleep(delay)
        self.metrics.failed.inc((dest.name, export.signal))
        self._log_failure(dest.name, export.signal, problem)

    def _log_failure(self, name: str, signal: str, problem: str) -> None:
        """At most one warning per destination a minute: a dead collector must not flood logs."""
        now = time.monotonic()
        if now - self._logged_failure.get(name, -1e9) >= 60:
            self._logged_failure[name] = now
            log.warning(
                "telemetry destination %r did not take a %s export (%s); see "
                "tollgate_otlp_forward_failed_total",
                name,
                signal,
                problem,
            )

    # -- shutdown -------------------------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every queue to empty; True if they did."""
        deadline = time.monotonic() + timeout
        while any(self._queues.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not any(self._queues.values())

    async def aclose(self, timeout: float = 2.0) -> None:
        self._closing = True
        await self.drain(timeout)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        for name, queue in self._queues.items():
            if queue:
                self.metrics.dropped.inc((name, "shutdown"), len(queue))
                queue.clear()
        self._bytes = 0
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0
