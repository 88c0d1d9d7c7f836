"""``make bench-soak``: memory over time, a steady rate through one data plane (issue #14, item 4).

``python -m bench.soak --minutes 20 --rate 50``: the stack of ``bench.streams`` (the paced
upstream, the control plane on a throw-away SQLite database, one data plane, provisioned as
``bench.run`` does), then ``bench.soak_load`` sends Claude Code requests (the fixture body, Claude
Code's headers, streamed) at a steady open-loop rate for the given minutes; each answer is
generated over ~0.5 s (``--events`` deltas every ``--pace-ms``), so about rate × 0.5 streams are
open at any time.

Every ``--sample-s`` seconds the data plane's RSS (``VmRSS``) and CPU time are read. Reported:
RSS at the start (before any load), at the baseline minute (``--baseline-min``, 5 by default: the
acceptance figure is the growth from there to the end, <= 5 %), in the middle and at the end (the
last sample under load); that growth in % and MiB; the medians of the minute after the baseline
and of the last minute (one sample swings by a few MiB with the streams in flight at that
instant); the least-squares slope of every sample from the baseline on (MiB per minute: a trend,
where two points may be noise); requests sent, answered and failed; the load generator's own late
starts; the data plane's CPU share. The usage ledger in the control plane must hold every answered
request exactly once (requests, output tokens, no error), as ``bench.streams`` checks it; the exit
code is 1 on any error or ledger mismatch (the growth is reported, not enforced, as the other
benches report their figures).

Heap snapshots: the data plane runs with ``TOLLGATE_TRACEMALLOC`` (``--tracemalloc-frames``, 1
by default; 0 runs without tracemalloc, for RSS free of its overhead) and is sent ``SIGUSR2``
(:mod:`dataplane.process.heapsnap`) at the baseline and 3 s before the load ends, both under the
same load, and once more 5 s after the load, idle. RSS is read just before and just after each
snapshot: taking one leaves a few MiB in the heap, so the baseline RSS is the one read just after
the baseline snapshot and the end RSS the one read just before the end snapshot. The report lists
the 15 allocation sites that grew most from the baseline to the end
(``Snapshot.compare_to(old, "lineno")``, without tracemalloc's own), then from the baseline to
idle (what is still held when nothing is in flight: the leak candidates), and each snapshot's
traced total and tracemalloc's own memory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from statistics import median
from typing import Any

from bench.loadgen import cpu_seconds
from bench.procs import Child, kib, proc_status, spawn, wait_for_file
from bench.run import fixture_path
from bench.sampler import short_path
from bench.streams import Stack, emit, paced_parser, run_on_stack
from bench.streams_report import footer
from dataplane.process.heapsnap import TRACEMALLOC_ENV

MIB = 1024.0
SNAPSHOT_LEAD_S = 3.0  # the end snapshot is taken this long before the load stops: still loaded
TOP_SITES = 15
WINDOW_S = 60.0  # the spans at each end whose median RSS is compared too
IDLE_AFTER_S = 5.0  # after the load, before the idle sample and snapshot


def last_progress(lg: Child) -> dict[str, Any]:
    """The load generator's latest progress line ({} before the first)."""
    for line in reversed(lg.log.read_text(errors="replace").splitlines()):
        if line.startswith('{"progress"'):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    return {}


def growing_sites(old: Path, new: Path, top: int = TOP_SITES) -> list[dict[str, Any]]:
    """The ``top`` source lines whose traced memory grew most from snapshot ``old`` to ``new``."""
    own = [tracemalloc.Filter(False, tracemalloc.__file__)]  # the snapshot machinery itself
    before = tracemalloc.Snapshot.load(str(old)).filter_traces(own)
    after = tracemalloc.Snapshot.load(str(new)).filter_traces(own)
    stats = [s for s in after.compare_to(before, "lineno") if s.size_diff > 0]
    stats.sort(key=lambda s: s.size_diff, reverse=True)
    return [
        {
            "where": f"{short_path(s.traceback[0].filename)}:{s.traceback[0].lineno}",
            "size_diff_kib": s.size_diff / 1024,
            "count_diff": s.count_diff,
            "size_kib": s.size / 1024,
        }
        for s in stats[:top]
    ]


class Soak:
    """Samples the data plane while the load generator runs; takes the two heap snapshots."""

    def __init__(self, stack: Stack, lg: Child, args: argparse.Namespace) -> None:
        self.stack, self.lg, self.args = stack, lg, args
        self.t0 = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any]] = []

    def sample(self, tag: str = "") -> dict[str, Any]:
        dp = self.stack.dp
        row = {
            "t_s": round(time.monotonic() - self.t0, 1),
            "rss_kib": kib(proc_status(dp.pid)["VmRSS"]),
            "dp_cpu_s": cpu_seconds(dp.pid),
            "tag": tag,
            **{k: v for k, v in last_progress(self.lg).items() if k in ("ok", "errors")},
        }
        self.samples.append(row)
        return row

    def snapshot(self, label: str) -> None:
        """RSS, ``SIGUSR2``, wait for the pickle, RSS again."""
        before = self.sample(f"before {label} snapshot")
        n = len(self.snapshots) + 1
        path = self.stack.state_dir / f"tracemalloc-{self.stack.dp.pid}-{n}.pickle"
        os.kill(self.stack.dp.pid, signal.SIGUSR2)
        # The counters are written last: once they are there, so is the pickle.
        counters = json.loads(wait_for_file(self.stack.dp, path.with_suffix(".json"), 120))
        after = self.sample(f"after {label} snapshot")
        self.snapshots.append(
            {"label": label, "path": path, **counters, "rss_before": before, "rss_after": after}
        )

    def run(self) -> None:
        args = self.args
        duration = args.minutes * 60
        due = [(args.baseline_min * 60, "baseline"), (duration - SNAPSHOT_LEAD_S, "end")]
        if not args.tracemalloc_frames:
            due = []
        self.sample("start")
        next_sample = args.sample_s
        deadline = duration + args.timeout_s + 60
        while self.lg.proc.poll() is None:  # sampling cadence, not a wait for an event
            now = time.monotonic() - self.t0
            if now > deadline:
                raise TimeoutError("bench.soak: the load generator overran")
            self.stack.dp.check_alive()
            if due and now >= due[0][0]:
                self.snapshot(due.pop(0)[1])
            elif now >= next_sample:
                self.sample()
                next_sample += args.sample_s
            time.sleep(0.2)
        time.sleep(IDLE_AFTER_S)  # the last answers end, their connections close
        self.sample("after the load")
        if self.args.tracemalloc_frames:
            self.snapshot("idle")


def at(samples: list[dict[str, Any]], t_s: float) -> dict[str, Any]:
    """The sample taken closest to ``t_s``."""
    return min(samples, key=lambda s: abs(s["t_s"] - t_s))


def slope_mib_per_min(samples: list[dict[str, Any]]) -> float:
    """Least-squares slope of RSS over time, MiB per minute (nan below two samples)."""
    if len(samples) < 2:
        return float("nan")
    ts = [s["t_s"] / 60 for s in samples]
    ys = [s["rss_kib"] / MIB for s in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var if var else 0.0


def summarise(soak: Soak, load: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The figures of the report, from the samples and the load generator's summary."""
    duration = args.minutes * 60
    after = next(i for i, s in enumerate(soak.samples) if s["tag"] == "after the load")
    under_load = soak.samples[:after]
    # Measured from just after the baseline snapshot: what taking it left in the heap is then
    # in both figures (the end is read before the end snapshot), not counted as growth.
    baseline = next(
        (s["rss_after"] for s in soak.snapshots if s["label"] == "baseline"),
        at(under_load, args.baseline_min * 60),
    )
    end = next(
        (s["rss_before"] for s in soak.snapshots if s["label"] == "end"),
        under_load[-1],
    )
    steady = [s for s in under_load if baseline["t_s"] <= s["t_s"] <= end["t_s"]]
    start = soak.samples[0]
    dp_cpu = under_load[-1]["dp_cpu_s"] - start["dp_cpu_s"]
    # One sample swings with the streams in flight at that instant (a few MiB under this load):
    # the median of a minute's samples at each end is the steadier comparison.
    first = median(s["rss_kib"] for s in steady if s["t_s"] <= baseline["t_s"] + WINDOW_S)
    last = median(s["rss_kib"] for s in steady if s["t_s"] >= end["t_s"] - WINDOW_S)
    return {
        "rss": {
            "start": start,
            "baseline": baseline,
            "middle": at(under_load, duration / 2),
            "end": end,
            "after_load": soak.samples[after],
        },
        "growth_kib": end["rss_kib"] - baseline["rss_kib"],
        "growth_pct": (end["rss_kib"] - baseline["rss_kib"]) / baseline["rss_kib"] * 100,
        "slope_mib_per_min": slope_mib_per_min(steady),
        "window_medians_kib": [first, last],
        "window_growth_pct": (last - first) / first * 100,
        "dp_cpu_share": dp_cpu / max(1e-9, under_load[-1]["t_s"] - start["t_s"]),
        "samples": soak.samples,
        "snapshots": [{k: v for k, v in s.items() if k != "path"} for s in soak.snapshots],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "minutes": args.minutes,
        "rate": args.rate,
        "pace_ms": args.pace_ms,
        "events": args.events,
        "baseline_min": args.baseline_min,
        "tracemalloc_frames": args.tracemalloc_frames,
    }

    def phases(work: Path, stack: Stack) -> int:
        fixture = fixture_path()
        plan = {
            "host": "127.0.0.1",
            "port": stack.dp_port,
            "auth": ["authorization", f"Bearer {stack.secret}"],
            "fixture": str(fixture),
            "rate": args.rate,
            "duration_s": args.minutes * 60,
            "events": args.events,
            "timeout_s": args.timeout_s,
            "progress_s": args.sample_s,
        }
        result["fixture_bytes"] = fixture.stat().st_size
        plan_path = work / "soak.json"
        plan_path.write_text(json.dumps(plan))
        lg = spawn("soak-load", ["-m", "bench.soak_load", str(plan_path)], work)
        soak = Soak(stack, lg, args)
        try:
            soak.run()
        finally:
            lg.stop()
        if lg.proc.returncode != 0:
            raise RuntimeError(f"soak load generator failed:\n{lg.tail(30)}")
        load: dict[str, Any] = json.loads(lg.log.read_text().strip().splitlines()[-1])
        result["load"] = load
        # What bench.streams.ok and streams_report.footer read errors and loader lag from.
        result["phases"] = [{"target": "gateway", "streams": f"{args.rate:g} req/s", **load}]
        result.update(summarise(soak, load, args))
        paths = {s["label"]: s["path"] for s in soak.snapshots}
        if paths:
            result["growing_sites"] = growing_sites(paths["baseline"], paths["end"])
            result["retained_sites"] = growing_sites(paths["baseline"], paths["idle"])
        ok: int = load["ok"]
        return ok

    dp_env = {TRACEMALLOC_ENV: str(args.tracemalloc_frames)} if args.tracemalloc_frames else {}
    alarm_s = args.minutes * 60 + args.timeout_s + 300
    return run_on_stack(result, args, alarm_s, phases, dp_env)


def _clock(t_s: float) -> str:
    return f"{int(t_s // 60)}:{int(t_s % 60):02d}"


def _sites(title: str, sites: list[dict[str, Any]]) -> list[str]:
    return [
        "",
        title,
        "| grew | blocks | now | where |",
        "|---:|---:|---:|---|",
        *(
            f"| {g['size_diff_kib']:+.1f} KiB | {g['count_diff']:+d} | {g['size_kib']:.1f} KiB "
            f"| {g['where']} |"
            for g in sites
        ),
    ]


def render(r: dict[str, Any]) -> str:
    load, rss = r["load"], r["rss"]
    frames = r["tracemalloc_frames"]
    out = [
        f"soak: {r['minutes']:g} min at {r['rate']:g} req/s (open loop) through one data plane; "
        f"the Claude Code fixture ({r['fixture_bytes'] / 1024:.0f} KiB, streamed), answers of "
        f"{r['events']} deltas every {r['pace_ms']:g} ms; "
        + (
            f"tracemalloc on ({frames} frame{'s' if frames > 1 else ''})"
            if frames
            else "no tracemalloc"
        ),
        f"requests: {load['sent']} sent, {load['ok']} answered, {load['errors']} errors, "
        f"{load['late_starts']} started > 50 ms late, {load['connections']} connections; "
        f"TTLB p50 / p99 {load['ttlb_ms']['p50']:.0f} / {load['ttlb_ms']['p99']:.0f} ms; "
        f"data plane CPU {r['dp_cpu_share']:.0%} of a core",
        "",
        "| when | at | data plane RSS | answered by then |",
        "|---|---:|---:|---:|",
    ]
    names = {
        "start": "start (before the load)",
        "baseline": f"baseline (minute {r['baseline_min']:g})",
        "middle": "middle",
        "end": "end (last sample under load)",
        "after_load": "after the load",
    }
    for key, name in names.items():
        s = rss[key]
        out.append(
            f"| {name} | {_clock(s['t_s'])} | {s['rss_kib'] / MIB:.1f} MiB | {s.get('ok', 0)} |"
        )
    out += [
        "",
        f"RSS growth from the baseline to the end: {r['growth_kib'] / MIB:+.1f} MiB "
        f"({r['growth_pct']:+.1f} %); issue #14's acceptance: <= 5 % from minute 5 to minute 20",
        f"median RSS of the minute after the baseline and of the last minute: "
        f"{r['window_medians_kib'][0] / MIB:.1f} -> {r['window_medians_kib'][1] / MIB:.1f} MiB "
        f"({r['window_growth_pct']:+.1f} %)",
        f"RSS trend from the baseline on (least squares): {r['slope_mib_per_min']:+.2f} MiB/min",
        "RSS every sample (m:ss MiB): "
        + ", ".join(f"{_clock(s['t_s'])} {s['rss_kib'] / MIB:.1f}" for s in r["samples"]),
    ]
    for snap in r["snapshots"]:
        out.append(
            f"snapshot ({snap['label']}): traced {snap['traced_bytes'] / MIB**2:.1f} MiB "
            f"(peak {snap['traced_peak_bytes'] / MIB**2:.1f}), tracemalloc's own "
            f"{snap['tracemalloc_bytes'] / MIB**2:.1f} MiB, took {snap['seconds']:.2f} s; RSS "
            f"{snap['rss_before']['rss_kib'] / MIB:.1f} -> {snap['rss_after']['rss_kib'] / MIB:.1f}"
            " MiB across it"
        )
    if r.get("growing_sites") is not None:
        out += _sites(
            f"allocation sites that grew most, baseline -> end (both under load; top {TOP_SITES}):",
            r["growing_sites"],
        )
        out += _sites(
            "... and baseline -> idle after the load (nothing in flight: what growth stays):",
            r["retained_sites"],
        )
    out += ["", *footer(r)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = paced_parser("bench.soak", __doc__, events=25)
    parser.add_argument("--minutes", type=float, default=20.0, help="how long the load runs")
    parser.add_argument("--rate", type=float, default=50.0, help="requests a second (open loop)")
    parser.add_argument(
        "--baseline-min", type=float, default=5.0, help="growth is measured from this minute"
    )
    parser.add_argument("--sample-s", type=float, default=15.0, help="RSS sampling period")
    parser.add_argument(
        "--tracemalloc-frames",
        type=int,
        default=1,
        help="frames per traced allocation in the data plane (0: no tracemalloc, no snapshots)",
    )
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per request")
    args = parser.parse_args(argv)
    if not 0 < args.baseline_min * 60 < args.minutes * 60 - SNAPSHOT_LEAD_S - args.sample_s:
        parser.error("--baseline-min must be > 0 and well before the end (--minutes)")
    if args.rate <= 0 or args.sample_s <= 0 or args.events < 1 or args.pace_ms <= 0:
        parser.error("--rate, --sample-s and --pace-ms must be > 0, --events >= 1")
    if not 0 <= args.tracemalloc_frames <= 100:
        parser.error("--tracemalloc-frames must be 0 to 100")
    result = run(args)
    return emit(result, render(result), args.json)


if __name__ == "__main__":
    sys.exit(main())
