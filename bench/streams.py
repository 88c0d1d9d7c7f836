"""``make bench-streams``: many open, slowly generated streams through one data-plane worker.

Issue #14's scenario: N concurrent streams that each get a token every 20 ms for 10 s (500 text
deltas), through one data plane, and the same N streams straight at the upstream in the same run
as the baseline. Sizes 100, 250 and 1,000 by default, so memory per open stream has a slope.

Processes (loopback, each its own interpreter): ``bench.upstream --pace-ms --events`` (every
delta stamped with its emit time), the control plane on a throw-away SQLite database, one data
plane (``bench.dp_main``), provisioned as ``bench.run`` does, and per phase one
``bench.streams_load`` (raw asyncio; reports its own loop lag and CPU).

Measured per phase: per-token delay (arrival minus the upstream's emit stamp) p50/p99/p99.9 over
the tokens emitted while all N streams were open; the data plane's RSS before and at its peak
(sampled every 0.1 s), its CPU share, and its event-loop lag (``dataplane.process.looplag`` on
``/metrics``: quantiles from the histogram's buckets over the phase, so an upper bound, and the
largest sample); how long its loop waited, runnable, for a CPU the box did not give it
(``/proc/<pid>/schedstat``: the shared box's noise, per scheduling and as a share of the phase)
and the box's CPU pressure (PSI: share of the phase some task waited for a CPU); the load
generator's and the upstream's CPU share; errors. At the end the
control plane's usage ledger must hold exactly one request per gateway stream and ``events``
output tokens each.

Per size, ``--rounds`` pairs of phases run back to back (direct, then gateway), so noise from a
shared box hits a pair alike; the summary takes, per size, the median over rounds of each
pair's difference.

Flags: ``--sizes 100,250,1000``, ``--rounds 1``, ``--pace-ms 20``, ``--events 500``, ``--ramp-s 2``, ``--json``,
``--profile`` (the data plane under ``bench.sampler``; its CPU profile over the whole run is
printed after the tables — the sampler's own cost inflates the delays of that run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import sampler
from bench.loadgen import cpu_seconds
from bench.procs import (
    Child,
    kib,
    proc_status,
    spawn,
    start_controlplane,
    start_upstream,
    wait_for_json,
)
from bench.run import PROVIDER_KEY_ENV, provision, usage_total
from bench.streams_report import render

LAG_METRIC = "tollgate_event_loop_lag_seconds"


def scrape_lag(port: int) -> tuple[dict[float, int], float]:
    """The data plane's loop-lag histogram (cumulative count per ``le``) and recent max (s)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    buckets: dict[float, int] = {}
    recent_max = 0.0
    for line in text.splitlines():
        if line.startswith(LAG_METRIC + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = int(float(line.split()[-1]))
        elif line.startswith("tollgate_event_loop_lag_max_seconds "):
            recent_max = float(line.split()[-1])
    return buckets, recent_max


def bucket_quantile(before: dict[float, int], after: dict[float, int], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of the samples between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1] if counts else 0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if total and cumulative >= q * total:
            return bound
    return float("nan")


def schedstat(pid: int) -> tuple[int, int, int]:
    """(ns on a CPU, ns runnable but waiting for one, times scheduled) of a process's main
    thread (Linux ``/proc/<pid>/schedstat``)."""
    on_cpu, waiting, slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu), int(waiting), int(slices)


def cpu_pressure_us() -> int | None:
    """Microseconds during which some runnable task waited for a CPU (PSI), if the kernel says."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None
    return int(first.rsplit("total=", 1)[1])


def run_phase(work: Path, name: str, plan: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """One load-generator run, sampling the data plane meanwhile."""
    dp, dp_port, upstream = stack.dp, stack.dp_port, stack.upstream
    plan_path = work / f"{name}.json"
    plan_path.write_text(json.dumps(plan))
    lag_before, _ = scrape_lag(dp_port)
    rss_before = kib(proc_status(dp.pid)["VmRSS"])
    cpu_dp0, cpu_up0, t0 = cpu_seconds(dp.pid), cpu_seconds(upstream.pid), time.monotonic()
    sched0, psi0 = schedstat(dp.pid), cpu_pressure_us()
    lg = spawn(name, ["-m", "bench.streams_load", str(plan_path)], work)
    rss_peak, lag_max, next_scrape, scrape_timeouts = rss_before, 0.0, 0.0, 0
    deadline = (
        time.monotonic() + plan["timeout_s"] + plan["ramp_s"] + plan.get("duration_s", 0) + 30
    )
    try:
        while lg.proc.poll() is None:  # sampling cadence, not a wait for an event
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: the load generator overran")
            dp.check_alive()
            rss_peak = max(rss_peak, kib(proc_status(dp.pid)["VmRSS"]))
            if time.monotonic() >= next_scrape:
                try:
                    lag_max = max(lag_max, scrape_lag(dp_port)[1])
                except OSError:  # a saturated loop accepts or answers late: counted, not fatal
                    scrape_timeouts += 1
                next_scrape = time.monotonic() + 1.0
            time.sleep(0.1)
    finally:
        lg.stop()
    wall = time.monotonic() - t0
    sched1, psi1 = schedstat(dp.pid), cpu_pressure_us()
    if lg.proc.returncode != 0:
        raise RuntimeError(f"{name}: load generator failed:\n{lg.tail(30)}")
    result: dict[str, Any] = json.loads(lg.log.read_text().strip().splitlines()[-1])
    lag_after, recent = scrape_lag(dp_port)
    dp_cpu = cpu_seconds(dp.pid) - cpu_dp0
    result["dataplane"] = {
        "rss_before_kib": rss_before,
        "rss_peak_kib": rss_peak,
        "cpu_s": dp_cpu,
        "cpu_share": dp_cpu / wall,
        "cpu_us_per_token": dp_cpu * 1e6 / max(1, result["tokens"]),
        "lag_p50_ms": bucket_quantile(lag_before, lag_after, 0.5) * 1e3,
        "lag_p99_ms": bucket_quantile(lag_before, lag_after, 0.99) * 1e3,
        "lag_max_ms": max(lag_max, recent) * 1e3,
        "metrics_scrapes_timed_out": scrape_timeouts,  # /metrics slower than 5 s mid-phase
        # Time its loop was ready to run but the box gave it no CPU: noise, not the gateway.
        "runqueue_wait_share": (sched1[1] - sched0[1]) / 1e9 / wall,
        "runqueue_wait_per_slice_ms": (sched1[1] - sched0[1]) / 1e6 / max(1, sched1[2] - sched0[2]),
    }
    result["box_cpu_pressure"] = (
        (psi1 - psi0) / 1e6 / wall if psi0 is not None and psi1 is not None else None
    )
    result["upstream_cpu_share"] = (cpu_seconds(upstream.pid) - cpu_up0) / wall
    return result


@dataclass(frozen=True)
class Stack:
    """The processes of a paced-stream benchmark: upstream, control plane, one data plane."""

    upstream: Child
    upstream_port: int
    cp_addr: str
    admin_token: str
    dp: Child
    dp_port: int
    provider_key: str
    secret: str  # the bench workspace's virtual key
    profile: Path  # the data plane's sampler output (with ``profile``)
    state_dir: Path  # the data plane's (heap snapshots land here unless told otherwise)

    def targets(self) -> dict[str, dict[str, Any]]:
        """Load-generator plan entries: straight at the upstream, and through the data plane."""
        return {
            "direct": {"port": self.upstream_port, "auth": ["x-api-key", self.provider_key]},
            "gateway": {"port": self.dp_port, "auth": ["x-api-key", self.secret]},
        }


def start_stack(
    work: Path,
    children: list[Child],
    pace_ms: float,
    events: int,
    profile: bool,
    dp_env: Mapping[str, str] | None = None,
) -> Stack:
    """Start the paced upstream, the control plane (SQLite) and one data plane (``dp_env`` added
    to its environment), provisioned as ``bench.run`` does; every child is appended to
    ``children`` (the caller stops them)."""
    admin_token, dp_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    provider_key = "sk-ant-bench-" + secrets.token_hex(8)
    upstream, upstream_port = start_upstream(
        work, children, "--pace-ms", str(pace_ms), "--events", str(events)
    )
    db_url = f"sqlite:///{work / 'tollgate.db'}"
    _, cp_addr = start_controlplane(work, children, db_url, (admin_token, dp_token))
    secret, _ = asyncio.run(provision(cp_addr, admin_token, upstream_port))
    samples, state_dir = work / "dp.samples", work / "dp-state"
    dp = spawn(
        "dataplane",
        [
            "-m", "bench.dp_main", "--ready-file", str(work / "dp.ready"),
            "--control-plane", cp_addr, "--state-dir", str(state_dir),
            *(["--sample", str(samples)] if profile else []),
        ],
        work,
        env={
            PROVIDER_KEY_ENV: provider_key, "TOLLGATE_DATAPLANE_TOKEN": dp_token, **(dp_env or {}),
        },
    )  # fmt: skip
    children.append(dp)
    dp_port = int(wait_for_json(dp, work / "dp.ready")["port"])
    return Stack(
        upstream,
        upstream_port,
        cp_addr,
        admin_token,
        dp,
        dp_port,
        provider_key,
        secret,
        samples,
        state_dir,
    )


def _overrun(signum: int, frame: object) -> None:
    raise TimeoutError("bench.streams overran its time limit")


def run_on_stack(
    result: dict[str, Any],
    args: argparse.Namespace,
    alarm_s: float,
    phases: Callable[[Path, Stack], int],
    dp_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Start the stack (``args.pace_ms``, ``args.events``, ``args.profile``, ``dp_env``), run
    ``phases`` on it (it returns how many gateway requests the ledger must hold), check the
    ledger, stop every child; the whole bounded by ``alarm_s``. Fills and returns ``result``."""
    signal.signal(signal.SIGALRM, _overrun)
    signal.alarm(int(alarm_s))
    load_before = os.getloadavg()
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-streams-") as tmp:
        work = Path(tmp)
        try:
            stack = start_stack(work, children, args.pace_ms, args.events, args.profile, dp_env)
            expected = phases(work, stack)
            result["usage"] = asyncio.run(
                usage_total(stack.cp_addr, stack.admin_token, expected, 20.0)
            )
            result["usage_expected"] = {
                "requests": expected,
                "output_tokens": expected * args.events,
            }
            stack.dp.stop()
            children.remove(stack.dp)
            result["dataplane_log_errors"] = [
                line
                for line in stack.dp.log.read_text().splitlines()
                if "ERROR" in line or "Traceback" in line
            ][:5]
            if args.profile and stack.profile.exists():
                result["profile"] = sampler.render(stack.profile)
        finally:
            for child in reversed(children):
                child.stop()
    result["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    signal.alarm(0)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    phase_s = args.ramp_s + args.events * args.pace_ms / 1000 + 20
    result: dict[str, Any] = {
        "sizes": sizes,
        "pace_ms": args.pace_ms,
        "events": args.events,
        "ramp_s": args.ramp_s,
        "rounds": args.rounds,
    }

    def phases(work: Path, stack: Stack) -> int:
        result["rss_idle_kib"] = kib(proc_status(stack.dp.pid)["VmRSS"])
        common = {
            "host": "127.0.0.1",
            "events": args.events,
            "pace_s": args.pace_ms / 1000,
            "ramp_s": args.ramp_s,
            "timeout_s": phase_s,
        }
        done = result["phases"] = []
        for n in sizes:
            for round_ in range(args.rounds):
                for target, where in stack.targets().items():
                    plan = {**common, **where, "streams": n}
                    phase = run_phase(work, f"{target}-{n}-{round_}", plan, stack)
                    done.append({"target": target, "round": round_, **phase})
        rounds: int = args.rounds
        return sum(sizes) * rounds

    return run_on_stack(result, args, 60 + 2 * len(sizes) * args.rounds * phase_s, phases)


def emit(result: dict[str, Any], text: str, as_json: bool) -> int:
    """Print a paced-stream benchmark's tables (then its profile, its raw JSON); its exit code."""
    print(text)
    if "profile" in result:
        print()
        print(result.pop("profile"))
    if as_json:
        print(json.dumps(result, indent=2))
    return 0 if ok(result) else 1


def paced_parser(prog: str, doc: str | None, events: int) -> argparse.ArgumentParser:
    """The flags every paced-stream benchmark has: the upstream's pace and answer length, the
    ramp of the starts, ``--json`` and ``--profile``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pace-ms", type=float, default=20.0, help="the upstream's token pace")
    parser.add_argument("--events", type=int, default=events, help="text deltas per stream")
    parser.add_argument("--ramp-s", type=float, default=2.0, help="spread of the stream starts")
    parser.add_argument("--json", action="store_true", help="also print the raw results")
    parser.add_argument(
        "--profile", action="store_true", help="sample the data plane's stacks (bench.sampler)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = paced_parser("bench.streams", __doc__, events=500)
    parser.add_argument("--sizes", default="100,250,1000", help="concurrent streams per phase")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="direct-then-gateway pairs per size (the summary takes the median over rounds)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.events < 1 or args.pace_ms <= 0:
        parser.error("--rounds and --events must be >= 1, --pace-ms > 0")
    result = run(args)
    return emit(result, render(result), args.json)


def ok(result: dict[str, Any]) -> bool:
    """Errors none, the ledger exact (the acceptance figures are reported, not enforced)."""
    usage, expected = result.get("usage", {}), result["usage_expected"]
    return (
        all(p["errors"] == 0 for p in result["phases"])
        and usage.get("requests") == expected["requests"]
        and usage.get("output_tokens") == expected["output_tokens"]
        and usage.get("errors") == 0
    )


if __name__ == "__main__":
    sys.exit(main())
