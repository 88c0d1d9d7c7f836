"""The benchmark's load generator, run in its own process: closed-loop and interleaved phases
(gateway against the upstream direct) over :mod:`bench.rawclient`, and their latency summaries.

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

from bench.rawclient import BadResponse, Conn, Target, build_request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Samples:
    ttfb: list[float] = field(default_factory=list)
    ttlb: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def add(self, ttfb: float, ttlb: float) -> None:
        self.ttfb.append(ttfb)
        self.ttlb.append(ttlb)


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


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    from bench.upstream import render_body

    body = Path(plan["fixture"]).read_bytes()
    expected = render_body()
    host = "127.0.0.1"

    def make_target(name: str, port: int, auth: tuple[str, str]) -> Target:
        return Target(name, host, port, build_request(host, port, body, auth), expected)

    def bearer(secret: str) -> tuple[str, str]:
        return ("authorization", f"Bearer {secret}")

    gw = make_target("gateway", plan["gateway_port"], bearer(plan["virtual_key"]))
    direct = make_target("direct", plan["upstream_port"], ("x-api-key", plan["provider_key"]))
    routed = make_target("route", plan["gateway_port"], bearer(plan["route_key"]))
    traced = make_target("traced", plan["traced_port"], bearer(plan["virtual_key"]))
    # The frameworks' floor (bench.bare_relay), given the provider's key as a direct call is.
    bare = make_target("bare", plan["bare_port"], ("x-api-key", plan["provider_key"]))
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
    pids = {
        "dataplane": dp_pid,
        "upstream": up_pid,
        "loadgen": os.getpid(),
        "bare": plan["bare_pid"],
    }
    await closed_loop(bare, 8, d["warmup"] / 3)
    for name, target, seconds in (
        ("gateway", gw, d["throughput"]),
        ("bare", bare, d["throughput"] / 2),
        ("direct", direct, d["throughput"] / 2),
    ):
        before = {k: cpu_seconds(pid) for k, pid in pids.items()}
        samples, elapsed = await closed_loop(target, conns, seconds)
        after = {k: cpu_seconds(pid) for k, pid in pids.items()}
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
        "bare": bare.ok,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(args[0]).read_text())
    result = asyncio.run(run(plan))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
