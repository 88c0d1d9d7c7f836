"""The load generator of ``bench.streams``: N concurrent paced streams, every token's delay.

``python -m bench.streams_load PLAN.json`` prints one JSON line. The plan gives the target
(``host``, ``port``, ``auth`` header), ``streams``, ``events`` (text deltas per answer),
``pace_s`` (the upstream's), ``ramp_s`` (stream i starts at i·ramp_s/streams, as a fleet's
requests do, not all at once) and ``timeout_s``. Delays are summarised over every token and over
the "steady" tokens: those emitted while all N streams were open (after the ramp, before the
first stream's end), the figure the scenario asks about.

Each stream is one connection (raw ``asyncio.Protocol``, no HTTP library: ~1,000 streams and
~50,000 tokens a second must not make this process the bottleneck) sending one streamed Messages
request. Each text delta carries the upstream's ``time.monotonic_ns()`` at its write
(``bench.upstream --pace-ms``); the token's delay is its arrival (the ``data_received`` call that
completed it) minus that stamp — the same clock in every process on the box. Responses are
de-chunked before scanning, so a chunk boundary never splits a stamp.

Closed-loop mode (``duration_s`` in the plan, for ``bench.sweep``): each of the N stream slots,
once started, opens a new stream as soon as its previous one ends, until ``ramp_s + duration_s``
after the start, so N streams stay open; with ``keepalive`` it sends the next request on the
same connection (as an HTTP client with a pool does). Each stream's time to last byte (from just before its
connect to the read that held ``message_stop``) is summarised over streams started after the
ramp.

A stream counts as an error if its status is not 200, the connection closes before
``message_stop``, it does not finish by ``timeout_s``, or it has not exactly ``events`` deltas.
The process's own event-loop lag (a 10 ms sampler, like ``dataplane.process.looplag``) and CPU time are
reported, so a result limited by the load generator says so.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sys
import time
from array import array
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

STAMP = re.compile(rb'"text":"(\d{19}) ')
REQUEST_BODY = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": "Stream me a long answer, please."}],
    },
    separators=(",", ":"),
).encode()


def build_request(host: str, port: int, auth: tuple[str, str]) -> bytes:
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: {host}:{port}\r\n"
        "content-type: application/json\r\naccept: text/event-stream\r\n"
        "anthropic-version: 2023-06-01\r\n"
        f"{auth[0]}: {auth[1]}\r\ncontent-length: {len(REQUEST_BODY)}\r\n\r\n"
    )
    return head.encode() + REQUEST_BODY


class Delays:
    """Every token's delay (ns), and those of tokens emitted while all streams were open."""

    def __init__(self) -> None:
        self.all: array[int] = array("q")
        self.steady: array[int] = array("q")
        self.window = (0, 0)  # emit stamps (ns) of the all-open window; set once known

    def add(self, now: int, stamp: int) -> None:
        self.all.append(now - stamp)
        if self.window[0] <= stamp <= self.window[1]:
            self.steady.append(now - stamp)


class Stream(asyncio.Protocol):
    """One streamed request on its own connection (or, with ``keepalive``, one request after
    another on it: :meth:`restart`); token delays go to the shared ``delays``."""

    def __init__(
        self, request: bytes, delays: Delays, done: asyncio.Future[str], keepalive: bool = False
    ) -> None:
        self.request, self.delays, self.keepalive = request, delays, keepalive
        self.transport: asyncio.Transport | None = None
        self._reset(done)

    def _reset(self, done: asyncio.Future[str]) -> None:
        self.done = done
        self.raw = bytearray()  # bytes not yet de-chunked (or the head, before it is complete)
        self.body = bytearray()  # de-chunked SSE text not yet scanned
        self.head_done = False
        self.chunked = False
        self.chunk_left = -1  # data bytes left in this chunk; -1: a size line is next
        self.last_chunk = False  # the zero-size chunk that ends the response has arrived
        self.tokens = 0
        self.stopped = False
        self.stopped_ns = 0  # monotonic ns of the read that held message_stop
        self.closing = False  # the server said `connection: close` (Hypercorn, every 1,000th)

    def itself(self) -> Stream:
        """The protocol factory of this stream's connection."""
        return self

    def reusable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and not self.closing

    def restart(self, done: asyncio.Future[str]) -> None:
        """The next request on this (idle, kept-alive) connection."""
        assert self.transport is not None
        self._reset(done)
        self.transport.write(self.request)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection closed after {self.tokens} tokens ({exc})")
        self.transport = None

    def _finish(self, outcome: str) -> None:
        if not self.done.done():
            self.done.set_result(outcome)
        if self.transport is not None and not (self.keepalive and outcome == "ok"):
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        raw = self.raw
        raw += data
        if not self.head_done:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).lower()
            del raw[: end + 4]
            self.head_done = True
            if head[9:12] != b"200":
                self._finish(f"status {head[9:12].decode()}")
                return
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
            self.closing = b"\r\nconnection: close" in head
        if self.chunked:
            self._dechunk()
        else:
            self.body += raw
            raw.clear()
        self._scan(now)

    def _dechunk(self) -> None:
        raw, pos = self.raw, 0
        while pos < len(raw):
            if self.chunk_left < 0:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                if eol == pos:  # the CRLF that ends a chunk's data
                    pos += 2
                    continue
                self.chunk_left = int(raw[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if self.chunk_left == 0:  # the last chunk (no trailers are sent): its CRLF too
                    self.last_chunk = True
                    pos = min(len(raw), pos + 2)
                    break
            take = min(self.chunk_left, len(raw) - pos)
            self.body += raw[pos : pos + take]
            pos += take
            self.chunk_left -= take
            if self.chunk_left == 0:
                self.chunk_left = -1
        del raw[:pos]

    def _scan(self, now: int) -> None:
        body = self.body
        end = body.rfind(b"\n\n")
        if end < 0:
            if self.stopped and self.last_chunk:
                self._finish("ok")
            return
        complete = bytes(body[: end + 2])
        del body[: end + 2]
        add = self.delays.add
        for m in STAMP.finditer(complete):
            add(now, int(m.group(1)))
            self.tokens += 1
        if b"event: message_stop" in complete:
            self.stopped, self.stopped_ns = True, now
        # Reused only once the response has fully arrived, so its end is not read as the next
        # response's head.
        if self.stopped and (self.last_chunk or not self.chunked):
            self._finish("ok")


async def sample_lag(lags: list[float], interval: float = 0.01) -> None:
    while True:
        due = time.monotonic() + interval
        await asyncio.sleep(interval)
        lags.append(max(0.0, time.monotonic() - due))


def quantile(xs: list[float] | list[int], q: float) -> float:
    if not xs:
        return float("nan")
    return float(xs[min(len(xs) - 1, int(q * len(xs)))])


def delay_summary(ns: array[int]) -> dict[str, float]:
    ordered, ms = sorted(ns), 1e-6
    return {
        "p50": quantile(ordered, 0.5) * ms,
        "p99": quantile(ordered, 0.99) * ms,
        "p999": quantile(ordered, 0.999) * ms,
        "max": (ordered[-1] if ordered else 0) * ms,
    }


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    n, events = int(plan["streams"]), int(plan["events"])
    request = build_request(plan["host"], plan["port"], tuple(plan["auth"]))
    delays = Delays()
    lags: list[float] = []
    lag_task = asyncio.create_task(sample_lag(lags))
    outcomes: list[str] = []
    streams: list[Stream] = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    # All N streams are open from the end of the ramp until the first one ends.
    delays.window = (
        int((t0 + plan["ramp_s"]) * 1e9),
        int((t0 + events * plan["pace_s"]) * 1e9),
    )

    duration = plan.get("duration_s")
    keepalive = bool(plan.get("keepalive", False))
    ttlb: array[int] = array("q")
    steady_from = int((t0 + plan["ramp_s"]) * 1e9)
    until = steady_from + int(duration * 1e9) if duration is not None else 0

    async def one(i: int) -> None:
        await asyncio.sleep(i * plan["ramp_s"] / n)
        stream: Stream | None = None
        while True:
            started = time.monotonic_ns()
            done: asyncio.Future[str] = loop.create_future()
            try:
                if stream is not None and stream.reusable():
                    stream.restart(done)
                else:
                    stream = Stream(request, delays, done, keepalive)
                    streams.append(stream)
                    await loop.create_connection(stream.itself, plan["host"], plan["port"])
                outcome = await asyncio.wait_for(done, plan["timeout_s"])
            except (OSError, TimeoutError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                if stream is not None:
                    stream._finish(outcome)
            assert stream is not None
            if outcome == "ok" and stream.tokens != events:
                outcome = f"{stream.tokens} tokens, expected {events}"
            outcomes.append(outcome)
            if outcome == "ok" and started >= steady_from:
                ttlb.append(stream.stopped_ns - started)
            if time.monotonic_ns() >= until:
                if stream.transport is not None:
                    stream.transport.close()
                return
            if outcome != "ok":
                stream = None

    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lag_task.cancel()
    errors = [o for o in outcomes if o != "ok"]
    lags.sort()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "streams": n,
        "ok": len(outcomes) - len(errors),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "tokens": len(delays.all),
        "delay_ms": delay_summary(delays.all),
        "steady_tokens": len(delays.steady),
        "steady_delay_ms": delay_summary(delays.steady),
        "ttlb_streams": len(ttlb),
        "ttlb_ms": delay_summary(ttlb),
        "wall_s": wall,
        "cpu_s": cpu,
        "lag_ms": {
            "p50": quantile(lags, 0.5) * 1e3,
            "p99": quantile(lags, 0.99) * 1e3,
            "max": (lags[-1] if lags else 0.0) * 1e3,
        },
    }


def run_plan(
    prog: str,
    run_fn: Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]],
    argv: list[str] | None,
) -> None:
    """A load generator's entry point: ``python -m PROG PLAN.json`` runs ``run_fn`` on the plan
    and prints its result as one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(f"usage: python -m {prog} PLAN.json")
    plan = json.loads(Path(args[0]).read_text())
    print(json.dumps(asyncio.run(run_fn(plan))), flush=True)


def main(argv: list[str] | None = None) -> None:
    run_plan("bench.streams_load", run, argv)


if __name__ == "__main__":
    main()
