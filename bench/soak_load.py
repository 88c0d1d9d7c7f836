"""The load generator of ``bench.soak``: a steady open-loop rate of Claude Code requests.

``python -m bench.soak_load PLAN.json`` prints a progress line (JSON, ``"progress": true``) every
``progress_s`` seconds and one summary line (JSON) at the end. The plan gives the target
(``host``, ``port``, ``auth`` header), the request body (``fixture``: the Claude Code fixture, sent
with Claude Code's headers by :func:`bench.rawclient.build_request`), ``rate`` (requests a
second), ``duration_s``, ``events`` (text deltas per paced answer) and ``timeout_s`` (per request).

Open loop: request i starts at ``t0 + i / rate`` whether or not earlier ones have ended, as a
fleet's requests arrive; a start more than 50 ms behind its schedule is counted (``late_starts``),
so a run this process could not keep up with says so. Each request takes an idle kept-alive
connection from the pool (the one freed last, as an HTTP client's pool does) or opens a new one;
the answer is parsed by :class:`bench.streams_load.Stream` (paced, every delta stamped by the
upstream). A request is an error under the same rules as ``bench.streams_load``: status not 200,
connection closed early, later than ``timeout_s``, or not exactly ``events`` deltas.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from array import array
from pathlib import Path
from typing import Any

from bench.rawclient import build_request
from bench.streams_load import (
    Delays,
    Stream,
    delay_summary,
    quantile,
    run_plan,
    sample_lag,
)

LATE_S = 0.05


class Counts:
    """What the run has done so far (the progress lines and the summary)."""

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.errors: list[str] = []
        self.late_starts = 0
        self.connections = 0


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host, port = plan["host"], int(plan["port"])
    request = build_request(host, port, Path(plan["fixture"]).read_bytes(), tuple(plan["auth"]))
    rate, events, timeout_s = float(plan["rate"]), int(plan["events"]), float(plan["timeout_s"])
    total = int(rate * float(plan["duration_s"]))
    counts, delays = Counts(), Delays()
    ttlb: array[int] = array("q")
    idle: list[Stream] = []
    lags: list[float] = []
    lag_task = asyncio.create_task(sample_lag(lags))

    async def one() -> None:
        started = time.monotonic_ns()
        done: asyncio.Future[str] = loop.create_future()
        stream: Stream | None = None
        while idle and stream is None:
            candidate = idle.pop()
            if candidate.reusable():
                stream = candidate
        try:
            if stream is not None:
                stream.restart(done)
            else:
                stream = Stream(request, delays, done, keepalive=True)
                counts.connections += 1
                await loop.create_connection(stream.itself, host, port)
            outcome = await asyncio.wait_for(done, timeout_s)
        except (OSError, TimeoutError) as exc:
            outcome = f"{type(exc).__name__}: {exc}"
            if stream is not None:
                stream._finish(outcome)
        assert stream is not None  # set before the first await of either branch
        if outcome == "ok" and stream.tokens != events:
            outcome = f"{stream.tokens} tokens, expected {events}"
        if outcome != "ok":
            counts.errors.append(outcome)
            return
        counts.ok += 1
        ttlb.append(stream.stopped_ns - started)
        if stream.reusable():
            idle.append(stream)

    def progress(t0: float) -> None:
        line = {
            "progress": True,
            "t_s": round(time.monotonic() - t0, 1),
            "sent": counts.sent,
            "ok": counts.ok,
            "errors": len(counts.errors),
            "in_flight": counts.sent - counts.ok - len(counts.errors),
            "connections": counts.connections,
            "late_starts": counts.late_starts,
        }
        print(json.dumps(line), flush=True)

    async def report(t0: float) -> None:
        while True:
            await asyncio.sleep(float(plan["progress_s"]))
            progress(t0)

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    reporter = asyncio.create_task(report(t0))
    tasks: set[asyncio.Task[None]] = set()
    for i in range(total):
        behind = time.monotonic() - (t0 + i / rate)
        if behind < 0:
            await asyncio.sleep(-behind)
        elif behind > LATE_S:
            counts.late_starts += 1
        counts.sent += 1
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    wall = time.monotonic() - t0
    reporter.cancel()
    lag_task.cancel()
    progress(t0)
    for stream in idle:
        if stream.transport is not None:
            stream.transport.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lags.sort()
    return {
        "rate": rate,
        "sent": counts.sent,
        "ok": counts.ok,
        "errors": len(counts.errors),
        "error_samples": sorted(set(counts.errors))[:5],
        "late_starts": counts.late_starts,
        "connections": counts.connections,
        "wall_s": wall,
        "ttlb_ms": delay_summary(ttlb),
        "tokens": len(delays.all),
        "delay_ms": delay_summary(delays.all),
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "lag_ms": {"p99": quantile(lags, 0.99) * 1e3, "max": (lags[-1] if lags else 0.0) * 1e3},
    }


def main(argv: list[str] | None = None) -> None:
    run_plan("bench.soak_load", run, argv)


if __name__ == "__main__":
    main()
