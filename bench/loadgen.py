"""The benchmark's load generator: a raw asyncio HTTP/1.1 client, run in its own process.

Why raw and not httpx: on a 2-core machine the client competes with the gateway for CPU. httpx
costs several times more CPU per streamed response than this ~100-line protocol (header parsing,
per-chunk decoding, its own pool), which would both slow the gateway and inflate its measured
latency. This client writes one pre-rendered request (the Claude Code fixture body) per
keep-alive connection, parses the status line, ``content-length`` or ``chunked`` framing, and
timestamps the first body byte (TTFB) and the last (TTLB). It checks every response for status
200, the expected body length and the final ``message_stop`` event, and the first response of
every connection byte for byte.

``python -m bench.loadgen PLAN.json`` runs the phases of the plan and prints one JSON document.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class BadResponse(Exception):
    pass


class ClientProtocol(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[float, float]] | None = None
        self.buf = bytearray()
        self.state = "idle"
        self.status = 0
        self.remaining = 0  # content-length mode: body bytes left
        self.chunked = False
        self.chunk_left = 0  # chunked mode: bytes left in the current chunk (+2 for CRLF)
        self.body_len = 0
        self.keep: bytearray | None = None
        self.t_first = 0.0
        self.closed = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BadResponse(f"connection lost in state {self.state}: {exc}"))

    def send(self, request: bytes, keep_body: bool) -> asyncio.Future[tuple[float, float]]:
        if self.transport is None or self.closed or self.state != "idle":
            raise BadResponse(f"connection not reusable (state {self.state}, closed {self.closed})")
        self.waiter = asyncio.get_running_loop().create_future()
        self.state = "head"
        self.buf.clear()
        self.body_len = 0
        self.t_first = 0.0
        self.keep = bytearray() if keep_body else None
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.state == "head":
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            rest = bytes(self.buf[end + 4 :])
            self.buf.clear()
            self.status = int(head[9:12])
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
            # e.g. Hypercorn's keep_alive_max_requests: reconnect for the next request
            self.closing = b"\r\nconnection: close" in head
            if not self.chunked:
                i = head.find(b"\r\ncontent-length:")
                if i < 0:
                    self._fail("response has neither content-length nor chunked framing")
                    return
                j = head.find(b"\r\n", i + 2)
                self.remaining = int(head[i + 17 : j if j >= 0 else None])
            self.state = "body"
            self.chunk_left = 0
            if rest:
                self._body(rest, now)
            elif not self.chunked and self.remaining == 0:
                self._done(now)
        elif self.state == "body":
            self._body(data, now)

    def _body(self, data: bytes, now: float) -> None:
        if not self.chunked:
            if not self.t_first:
                self.t_first = now
            self.body_len += len(data)
            if self.keep is not None:
                self.keep += data
            self.remaining -= len(data)
            if self.remaining <= 0:
                self._done(now)
            return
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while pos < n:
            if self.chunk_left:
                take = min(self.chunk_left, n - pos)
                payload_end = pos + take
                # the last 2 bytes of chunk_left are the chunk's trailing CRLF
                data_bytes = max(0, min(take, self.chunk_left - 2))
                if data_bytes:
                    if not self.t_first:
                        self.t_first = now
                    self.body_len += data_bytes
                    if self.keep is not None:
                        self.keep += buf[pos : pos + data_bytes]
                self.chunk_left -= take
                pos = payload_end
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:
                if n < eol + 4:  # wait for the final CRLF (no trailers expected)
                    break
                del buf[:]
                self._done(now)
                return
            pos = eol + 2
            self.chunk_left = size + 2
        del buf[:pos]

    def _done(self, now: float) -> None:
        self.state = "idle"
        if self.closing and self.transport is not None:
            self.closed = True
            self.transport.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.t_first or now, now))

    def _fail(self, why: str) -> None:
        self.state = "broken"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BadResponse(why))
        if self.transport is not None:
            self.transport.close()


@dataclass
class Target:
    name: str
    host: str
    port: int
    request: bytes
    expected_body: bytes
    ok: int = 0  # every 200 with the right body, warm-up included


@dataclass
class Samples:
    ttfb: list[float] = field(default_factory=list)
    ttlb: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def add(self, ttfb: float, ttlb: float) -> None:
        self.ttfb.append(ttfb)
        self.ttlb.append(ttlb)


class Conn:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.proto: ClientProtocol | None = None
        self.verified = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(ClientProtocol, self.target.host, self.target.port)
        self.proto = proto
        self.verified = False

    async def request(self) -> tuple[float, float]:
        """One request; returns (ttfb, ttlb) in seconds. Raises BadResponse."""
        if self.proto is None or self.proto.closed:
            await self.open()
        assert self.proto is not None
        proto = self.proto
        keep = not self.verified
        t0 = time.perf_counter()
        t_first, t_last = await proto.send(self.target.request, keep)
        expected = self.target.expected_body
        if proto.status != 200:
            raise BadResponse(f"{self.target.name}: HTTP {proto.status}")
        if proto.body_len != len(expected):
            raise BadResponse(
                f"{self.target.name}: body of {proto.body_len} bytes, expected {len(expected)}"
            )
        if keep:
            if bytes(proto.keep or b"") != expected:
                raise BadResponse(f"{self.target.name}: body differs from the upstream's bytes")
            self.verified = True
        return t_first - t0, t_last - t0

    def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()


async def _one(conn: Conn, samples: Samples) -> None:
    try:
        ttfb, ttlb = await asyncio.wait_for(conn.request(), 30)
        samples.add(ttfb, ttlb)
        conn.target.ok += 1
    except (BadResponse, OSError, TimeoutError) as exc:
        samples.errors += 1
        if not samples.first_error:
            samples.first_error = str(exc) or type(exc).__name__
        conn.close()
        conn.proto = None
        await asyncio.sleep(0.01)


async def closed_loop(target: Target, conns: int, seconds: float) -> tuple[Samples, float]:
    """``conns`` connections, each sending back-to-back for ``seconds``; returns samples, elapsed."""
    samples = Samples()
    pool = [Conn(target) for _ in range(conns)]
    await asyncio.gather(*(c.open() for c in pool))
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(conn: Conn) -> None:
        while time.perf_counter() < deadline:
            await _one(conn, samples)

    await asyncio.gather(*(worker(c) for c in pool))
    elapsed = time.perf_counter() - start
    for c in pool:
        c.close()
    return samples, elapsed


async def interleaved_single(gw: Target, direct: Target, seconds: float) -> dict[str, Samples]:
    """One connection to each; requests alternate (gw, direct, direct, gw, …) so drift and
    neighbours' noise hit both sides alike."""
    out = {"gateway": Samples(), "direct": Samples()}
    a, b = Conn(gw), Conn(direct)
    await a.open()
    await b.open()
    deadline = time.perf_counter() + seconds
    flip = False
    while time.perf_counter() < deadline:
        order = [(a, out["gateway"]), (b, out["direct"])]
        if flip:
            order.reverse()
        flip = not flip
        for conn, samples in order:
            await _one(conn, samples)
    a.close()
    b.close()
    return out


async def interleaved_slices(
    gw: Target, direct: Target, conns: int, seconds: float, slice_s: float = 0.5
) -> dict[str, Samples]:
    """``conns`` concurrent connections, alternating short slices gateway / direct."""
    out = {"gateway": Samples(), "direct": Samples()}
    spent = 0.0
    while spent < seconds:
        for name, target in (("gateway", gw), ("direct", direct)):
            s, _ = await closed_loop(target, conns, slice_s)
            out[name].ttfb += s.ttfb
            out[name].ttlb += s.ttlb
            out[name].errors += s.errors
            out[name].first_error = out[name].first_error or s.first_error
        spent += slice_s
    return out


def quantile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    idx = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[idx]


def summary(s: Samples) -> dict[str, Any]:
    ms = 1000.0
    return {
        "n": len(s.ttlb),
        "errors": s.errors,
        "first_error": s.first_error,
        "ttfb_p50_ms": quantile(s.ttfb, 0.5) * ms,
        "ttfb_p99_ms": quantile(s.ttfb, 0.99) * ms,
        "ttlb_p50_ms": quantile(s.ttlb, 0.5) * ms,
        "ttlb_p99_ms": quantile(s.ttlb, 0.99) * ms,
    }


def build_request(host: str, port: int, body: bytes, auth: tuple[str, str]) -> bytes:
    """The request Claude Code sends (headers as observed from 2.1.197), with ``body``."""
    headers = [
        ("host", f"{host}:{port}"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("user-agent", "claude-cli/2.1.197 (external, sdk-cli)"),
        ("x-claude-code-session-id", "0b4c1f0e-bench-4000-8000-000000000001"),
        ("x-stainless-retry-count", "0"),
        ("x-stainless-timeout", "600"),
        (
            "anthropic-beta",
            "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,"
            "context-management-2025-06-27,prompt-caching-scope-2026-01-05,effort-2025-11-24",
        ),
        ("anthropic-version", "2023-06-01"),
        auth,
        ("x-app", "cli"),
        ("connection", "keep-alive"),
        ("content-length", str(len(body))),
    ]
    head = "POST /v1/messages?beta=true HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"\r\n" + body


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    from bench.upstream import render_body

    body = Path(plan["fixture"]).read_bytes()
    expected = render_body()
    host = "127.0.0.1"
    gw = Target(
        "gateway",
        host,
        plan["gateway_port"],
        build_request(
            host, plan["gateway_port"], body, ("authorization", f"Bearer {plan['virtual_key']}")
        ),
        expected,
    )
    direct = Target(
        "direct",
        host,
        plan["upstream_port"],
        build_request(host, plan["upstream_port"], body, ("x-api-key", plan["provider_key"])),
        expected,
    )
    routed = Target(
        "route",
        host,
        plan["gateway_port"],
        build_request(
            host, plan["gateway_port"], body, ("authorization", f"Bearer {plan['route_key']}")
        ),
        expected,
    )
    traced = Target(
        "traced",
        host,
        plan["traced_port"],
        build_request(
            host, plan["traced_port"], body, ("authorization", f"Bearer {plan['virtual_key']}")
        ),
        expected,
    )
    d = plan["durations"]
    dp_pid, up_pid = plan["dataplane_pid"], plan["upstream_pid"]
    result: dict[str, Any] = {"body_bytes": len(body), "response_bytes": len(expected)}

    # Warm-up: connection pools, code paths, allocator.
    await closed_loop(gw, 8, d["warmup"])
    await closed_loop(direct, 8, d["warmup"] / 3)

    # The data plane only works for gateway requests, so its CPU time over an interleaved phase
    # divided by the gateway requests is its CPU cost per request at that concurrency.
    cpu0 = cpu_seconds(dp_pid)
    c1 = await interleaved_single(gw, direct, d["c1"])
    result["c1"] = {k: summary(v) for k, v in c1.items()}
    result["c1"]["dp_cpu_s"] = cpu_seconds(dp_pid) - cpu0
    cpu0 = cpu_seconds(dp_pid)
    c8 = await interleaved_slices(gw, direct, 8, d["c8"])
    result["c8"] = {k: summary(v) for k, v in c8.items()}
    result["c8"]["dp_cpu_s"] = cpu_seconds(dp_pid) - cpu0

    # A fallback route with a healthy primary against the plain provider, both through the
    # gateway: what the attempt chain (plan, first-event peek, breaker bookkeeping) costs.
    await closed_loop(routed, 4, d["warmup"] / 3)
    rp = await interleaved_single(routed, gw, d["c1"])
    result["route_vs_plain"] = {"route": summary(rp["gateway"]), "plain": summary(rp["direct"])}

    # The same data plane with tracing on (--otlp-endpoint, a local receiver) against the plain
    # one, request by request: what building and exporting the spans adds to a request.
    await closed_loop(traced, 4, d["warmup"] / 2)
    traced_pid = plan["traced_pid"]
    cpu_at = {"traced": cpu_seconds(traced_pid), "plain": cpu_seconds(dp_pid)}
    tp = await interleaved_single(traced, gw, d["c1"])
    result["tracing"] = {
        "traced": summary(tp["gateway"]),
        "plain": summary(tp["direct"]),
        "cpu_s": {
            "traced": cpu_seconds(traced_pid) - cpu_at["traced"],
            "plain": cpu_seconds(dp_pid) - cpu_at["plain"],
        },
    }

    tput: dict[str, Any] = {}
    conns = plan["throughput_conns"]
    for name, target, seconds in (
        ("gateway", gw, d["throughput"]),
        ("direct", direct, d["throughput"] / 2),
    ):
        before = {
            "dataplane": cpu_seconds(dp_pid),
            "upstream": cpu_seconds(up_pid),
            "loadgen": cpu_seconds(os.getpid()),
        }
        samples, elapsed = await closed_loop(target, conns, seconds)
        after = {
            "dataplane": cpu_seconds(dp_pid),
            "upstream": cpu_seconds(up_pid),
            "loadgen": cpu_seconds(os.getpid()),
        }
        tput[name] = {
            **summary(samples),
            "elapsed_s": elapsed,
            "rps": len(samples.ttlb) / elapsed,
            "cpu_s": {k: after[k] - before[k] for k in before},
        }
    result["throughput"] = tput
    result["throughput_conns"] = conns
    result["completed"] = {
        "gateway": gw.ok,
        "direct": direct.ok,
        "route": routed.ok,
        "traced": traced.ok,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(args[0]).read_text())
    result = asyncio.run(run(plan))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
