"""The tables ``bench.streams`` prints (from its result dict)."""

from __future__ import annotations

import statistics
from typing import Any

MIB = 1024.0  # KiB per MiB
ACCEPT_ADDED_P99_MS = 5.0  # issue #14: per-token delay p99 at most this much above direct
ACCEPT_RSS_MIB = 300.0
LOADGEN_LAG_LIMIT_MS = 5.0  # above this, the load generator's own loop shapes the delays


def slope_per_100(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (streams, MiB), per 100 streams (NaN with fewer than 2 sizes)."""
    if len({n for n, _ in points}) < 2:
        return float("nan")
    mx = sum(n for n, _ in points) / len(points)
    my = sum(m for _, m in points) / len(points)
    num = sum((n - mx) * (m - my) for n, m in points)
    den = sum((n - mx) ** 2 for n, _ in points)
    return 100 * num / den


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def verdict(good: bool) -> str:
    return "met" if good else "MISSED"


def render(r: dict[str, Any]) -> str:
    idle = r["rss_idle_kib"] / MIB
    out = [
        f"many open streams: {r['events']} tokens every {r['pace_ms']:g} ms per stream, "
        f"starts spread over {r['ramp_s']:g} s; delays over tokens emitted while all streams "
        "were open",
        "",
        "| streams | round | target | errors | tokens | delay p50 | p99 | p99.9 | max "
        "| DP RSS before / peak | DP CPU, per token | DP loop lag p50 / p99 / max "
        "| DP wait for CPU (share, per wake-up) | box CPU pressure "
        "| loadgen CPU, lag p99 | upstream CPU |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in r["phases"]:
        d, dp = p["steady_delay_ms"], p["dataplane"]
        lg_share = p["cpu_s"] / p["wall_s"] if p["wall_s"] else 0.0
        out.append(
            f"| {p['streams']} | {p['round']} | {p['target']} | {p['errors']} | {p['steady_tokens']} "
            f"| {d['p50']:.2f} ms | {d['p99']:.2f} ms | {d['p999']:.2f} ms | {d['max']:.1f} ms "
            f"| {dp['rss_before_kib'] / MIB:.1f} / {dp['rss_peak_kib'] / MIB:.1f} MiB "
            f"| {dp['cpu_share']:.0%}, {dp['cpu_us_per_token']:.0f} µs "
            f"| ≤{dp['lag_p50_ms']:g} / ≤{dp['lag_p99_ms']:g} / {dp['lag_max_ms']:.1f} ms "
            f"| {dp['runqueue_wait_share']:.0%}, {dp['runqueue_wait_per_slice_ms']:.2f} ms "
            f"| {_share(p['box_cpu_pressure'])} "
            f"| {lg_share:.0%}, {p['lag_ms']['p99']:.1f} ms | {p['upstream_cpu_share']:.0%} |"
        )
    by = {(p["streams"], p["round"], p["target"]): p for p in r["phases"]}
    out += [
        "",
        f"data plane RSS idle: {idle:.1f} MiB",
        "",
        "| streams | added delay p50 | added p99 (each round) | DP RSS peak "
        "| above idle per 100 streams |",
        "|---:|---:|---:|---:|---:|",
    ]
    points: list[tuple[int, float]] = []
    added_p99: dict[int, float] = {}
    for n in r["sizes"]:
        pairs = [
            (by[(n, i, "gateway")], by[(n, i, "direct")])
            for i in range(r["rounds"])
            if (n, i, "gateway") in by and (n, i, "direct") in by
        ]
        if not pairs:
            continue
        p50s = [g["steady_delay_ms"]["p50"] - d["steady_delay_ms"]["p50"] for g, d in pairs]
        p99s = [g["steady_delay_ms"]["p99"] - d["steady_delay_ms"]["p99"] for g, d in pairs]
        added_p99[n] = statistics.median(p99s)
        peak = max(g["dataplane"]["rss_peak_kib"] for g, _ in pairs) / MIB
        points.append((n, peak))
        each = ", ".join(f"{x:+.1f}" for x in p99s)
        out.append(
            f"| {n} | {statistics.median(p50s):+.2f} ms | {added_p99[n]:+.2f} ms ({each}) "
            f"| {peak:.1f} MiB | {(peak - idle) / n * 100:.2f} MiB |"
        )
    out.append(
        f"\nmemory per 100 open streams (slope over the sizes): {slope_per_100(points):.2f} MiB"
    )
    gw_phases = [p for p in r["phases"] if p["target"] == "gateway"]
    if gw_phases:
        per_token = statistics.median(p["dataplane"]["cpu_us_per_token"] for p in gw_phases)
        rate = max(r["sizes"]) * 1000 / r["pace_ms"]
        out.append(
            f"data plane CPU per relayed token (median of the gateway phases): {per_token:.0f} µs"
            f" -> {max(r['sizes'])} streams at {rate:,.0f} tokens/s need "
            f"{per_token * rate / 1e6:.2f} of a core"
        )
    biggest = max(r["sizes"])
    if biggest in added_p99:
        added = added_p99[biggest]
        peak = max(m for n, m in points if n == biggest)
        errors = sum(p["errors"] for p in r["phases"])
        out += [
            f"acceptance at {biggest} streams: added p99 {added:+.2f} ms "
            f"(≤ {ACCEPT_ADDED_P99_MS:g}: {verdict(added <= ACCEPT_ADDED_P99_MS)}), "
            f"RSS {peak:.1f} MiB (≤ {ACCEPT_RSS_MIB:g}: {verdict(peak <= ACCEPT_RSS_MIB)}), "
            f"errors {errors} ({verdict(errors == 0)})",
        ]
    out += footer(r)
    return "\n".join(out)


def footer(r: dict[str, Any]) -> list[str]:
    """The lines that close a paced-stream report (``bench.streams``, ``bench.sweep``): the usage
    ledger against what it must hold, phases whose load generator lagged, errors, the machine."""
    usage, expected = r.get("usage", {}), r["usage_expected"]
    out = [
        f"usage ledger: {usage.get('requests')} requests (expected {expected['requests']}), "
        f"{usage.get('output_tokens')} output tokens (expected {expected['output_tokens']}), "
        f"{usage.get('errors')} errors"
    ]

    def label(p: dict[str, Any]) -> str:
        return f"{p['target']} {p['streams']}" + (f"/{p['round']}" if "round" in p else "")

    limited = [
        f"{label(p)}: {p['lag_ms']['p99']:.1f} ms"
        for p in r["phases"]
        if p["lag_ms"]["p99"] > LOADGEN_LAG_LIMIT_MS
    ]
    if limited:
        out.append(
            "the load generator's own loop lag p99 exceeds "
            f"{LOADGEN_LAG_LIMIT_MS:g} ms ({', '.join(limited)}): those figures include its lag"
        )
    for p in r["phases"]:
        if p["error_samples"]:
            out.append(f"{label(p)} errors: {p['error_samples']}")
    if r.get("dataplane_log_errors"):
        out.append(f"data plane log errors: {r['dataplane_log_errors']}")
    m = r["machine"]
    out.append(
        f"machine: {m['cpus']} CPUs, load average before "
        f"{' '.join(f'{x:.2f}' for x in m['loadavg_before'])}, after "
        f"{' '.join(f'{x:.2f}' for x in m['loadavg_after'])}"
    )
    return out
