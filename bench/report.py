"""The benchmark's printed table: absolute figures, ratios vs direct, targets met or not."""

from __future__ import annotations

from typing import Any

TARGET_RPS = 400.0
TARGET_ADDED_P50_MS = 2.0
TARGET_RSS_MB = 150.0
TARGET_ROUTE_P50_MS = 0.2
TARGET_TRACING_P50_MS = 0.1
SPANS_PER_REQUEST = 4  # request, admission, one attempt, ttfb (a plain provider, no retry)


def _ratio(gw: float, direct: float) -> str:
    return f"{gw / direct:5.2f}x" if direct > 0 else "   -  "


def _mark(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def render(r: dict[str, Any], profiled: bool = False) -> str:
    lines: list[str] = []
    m = r["machine"]
    la0 = " ".join(f"{x:.2f}" for x in m["loadavg_before"])
    la1 = " ".join(f"{x:.2f}" for x in m["loadavg_after"])
    lines.append("Tollgate data-plane benchmark")
    lines.append(
        f"  machine: {m['cpus']} CPUs, SHARED (load avg before {la0}, after {la1}); loopback only;"
        " upstream, control plane, data plane and load generator are separate processes"
    )
    lines.append(
        f"  request: Claude Code fixture ({r['body_bytes'] / 1024:.0f} KiB, stream=true);"
        f" answer: 200 SSE events ({r['response_bytes'] / 1024:.1f} KiB);"
        " 1 data-plane process (= 1 worker)"
    )
    if profiled:
        lines.append(
            "  NOTE: the data plane ran under cProfile: its figures are slower than normal"
        )
    lines.append("")
    hdr = f"  {'':34}{'direct':>10}{'gateway':>10}{'added':>10}{'ratio':>8}"
    lines.append(hdr)
    lines.append("  " + "-" * (len(hdr) - 2))

    def row(label: str, d: float, g: float, unit: str = "ms") -> None:
        lines.append(
            f"  {label:34}{d:>8.2f}{unit}{g:>8.2f}{unit}{g - d:>+8.2f}{unit}{_ratio(g, d):>8}"
        )

    for conc in ("c1", "c8"):
        d, g = r[conc]["direct"], r[conc]["gateway"]
        n = f"{conc[1:]} conn"
        row(f"{n}: TTFB p50", d["ttfb_p50_ms"], g["ttfb_p50_ms"])
        row(f"{n}: TTFB p99", d["ttfb_p99_ms"], g["ttfb_p99_ms"])
        row(f"{n}: TTLB p50", d["ttlb_p50_ms"], g["ttlb_p50_ms"])
        row(f"{n}: TTLB p99", d["ttlb_p99_ms"], g["ttlb_p99_ms"])
        per_req = r[conc]["dp_cpu_s"] / (g["n"] or 1) * 1e6
        lines.append(
            f"  {'':34}(samples: direct {d['n']}, gateway {g['n']};"
            f" data plane CPU {per_req:.0f} µs/request)"
        )
    t = r["throughput"]
    td, tg = t["direct"], t["gateway"]
    conns = r["throughput_conns"]
    lines.append(
        f"  {f'throughput, {conns} conns (req/s)':34}{td['rps']:>10.0f}{tg['rps']:>10.0f}"
        f"{'':>10}{tg['rps'] / td['rps'] if td['rps'] else 0:>7.2f}x"
    )
    row(f"{conns} conns: TTLB p50", td["ttlb_p50_ms"], tg["ttlb_p50_ms"])
    dp_cpu = tg["cpu_s"]["dataplane"]
    dp_util = dp_cpu / tg["elapsed_s"]
    n_gw = tg["n"] or 1
    per_req_us = dp_cpu / n_gw * 1e6
    cpu_bound_rps = n_gw / dp_cpu if dp_cpu else 0.0
    lines.append(
        f"  data plane during throughput: {dp_util * 100:.0f}% of one core, {per_req_us:.0f} µs CPU"
        f" per request -> {cpu_bound_rps:.0f} req/s per fully busy core"
    )
    lines.append(
        "  CPU seconds in that phase: data plane {dataplane:.1f}, upstream {upstream:.1f},"
        " load generator {loadgen:.1f}".format(**tg["cpu_s"])
    )
    tb = t.get("bare")
    if tb is not None and tb["n"]:
        bare_us = tb["cpu_s"]["bare"] / tb["n"] * 1e6
        lines.append(
            f"  frameworks' floor (bench.bare_relay: uvloop, Hypercorn, aiohttp, no gateway):"
            f" {tb['rps']:.0f} req/s, {bare_us:.0f} µs CPU per request; the data plane costs"
            f" {per_req_us / bare_us:.2f}x that"
        )
    rss = r["dataplane_rss_kib"]
    lines.append(
        f"  data plane RSS: idle {rss['idle'] / 1024:.0f} MiB, peak (VmHWM) {rss['hwm'] / 1024:.0f} MiB,"
        f" at end {rss['now'] / 1024:.0f} MiB"
    )
    phases = (r["c1"], r["c8"], t)
    errs = {k: sum(p[k]["errors"] for p in phases) for k in ("gateway", "direct")}
    first = {
        k: next((p[k]["first_error"] for p in phases if p[k]["first_error"]), "") for k in errs
    }
    detail = "".join(f"; first {k} error: {first[k]}" for k in errs if first[k])
    lines.append(
        f"  responses checked: {r['completed']['gateway']} via gateway, {r['completed']['direct']}"
        f" direct; errors: gateway {errs['gateway']}, direct {errs['direct']}{detail}"
    )
    u = r.get("usage") or {}
    if u:
        lines.append(
            f"  control plane ingested usage for {u['requests']} requests"
            f" ({u['input_tokens'] + u['output_tokens']} tokens, ${u['cost_micros'] / 1e6:.2f}),"
            f" {u['errors']} errors"
        )
    if r.get("dataplane_log_errors"):
        lines.append("  data plane logged errors: " + " | ".join(r["dataplane_log_errors"]))

    rvp = r.get("route_vs_plain")
    if rvp:
        row(
            "fallback route vs plain: TTLB p50",
            rvp["plain"]["ttlb_p50_ms"],
            rvp["route"]["ttlb_p50_ms"],
        )
        lines.append(
            f"  {'':34}(plain provider in the first column, a 2-target fallback route with a"
            f" healthy primary in the second; samples {rvp['route']['n']} / {rvp['plain']['n']})"
        )
    tr = r.get("tracing")
    if tr:
        row("tracing on vs off: TTLB p50", tr["plain"]["ttlb_p50_ms"], tr["traced"]["ttlb_p50_ms"])
        row("tracing on vs off: TTFB p50", tr["plain"]["ttfb_p50_ms"], tr["traced"]["ttfb_p50_ms"])
        cpu = {k: tr["cpu_s"][k] / (tr[k]["n"] or 1) * 1e6 for k in ("plain", "traced")}
        lines.append(
            f"  {'':34}(off in the first column, on in the second: two data planes, 1 conn,"
            f" samples {tr['plain']['n']} / {tr['traced']['n']}; data plane CPU"
            f" {cpu['plain']:.0f} / {cpu['traced']:.0f} µs/request)"
        )
        if "spans" in tr:
            expected = r["completed"]["traced"] * SPANS_PER_REQUEST
            lines.append(
                f"  {'':34}(spans received by the OTLP sink: {tr['spans']} in {tr['exports']}"
                f" exports, expected {expected}; undecodable {tr['undecodable']})"
            )
        if tr.get("log_errors"):
            lines.append("  traced data plane logged: " + " | ".join(tr["log_errors"]))
    added_p50 = r["c1"]["gateway"]["ttlb_p50_ms"] - r["c1"]["direct"]["ttlb_p50_ms"]
    rss_mb = rss["hwm"] / 1024
    lines.append("")
    lines.append("  targets")
    lines.append(
        f"    throughput >= {TARGET_RPS:.0f} req/s per data-plane worker (200-event stream):"
        f" {tg['rps']:.0f} req/s  {_mark(tg['rps'] >= TARGET_RPS)}"
        f"   (CPU-normalised: {cpu_bound_rps:.0f}  {_mark(cpu_bound_rps >= TARGET_RPS)})"
    )
    lines.append(
        f"    added latency p50 <= {TARGET_ADDED_P50_MS:.0f} ms at 1 connection (TTLB):"
        f" {added_p50:.2f} ms  {_mark(added_p50 <= TARGET_ADDED_P50_MS)}"
    )
    lines.append(
        f"    data plane peak RSS <= {TARGET_RSS_MB:.0f} MB: {rss_mb:.0f} MiB"
        f"  {_mark(rss_mb <= TARGET_RSS_MB)}"
    )
    if rvp:
        route_added = rvp["route"]["ttlb_p50_ms"] - rvp["plain"]["ttlb_p50_ms"]
        lines.append(
            f"    fallback route overhead p50 <= {TARGET_ROUTE_P50_MS} ms over a plain provider:"
            f" {route_added:+.2f} ms  {_mark(route_added <= TARGET_ROUTE_P50_MS)}"
        )
    if tr:
        traced_added = tr["traced"]["ttlb_p50_ms"] - tr["plain"]["ttlb_p50_ms"]
        lines.append(
            f"    tracing on overhead p50 <= {TARGET_TRACING_P50_MS} ms over tracing off:"
            f" {traced_added:+.2f} ms  {_mark(traced_added <= TARGET_TRACING_P50_MS)}"
        )
    return "\n".join(lines)
