"""``make bench-sweep``: time to last byte of paced answers at 1, 64, 256 and 1,000 concurrent
streams, through one data plane and straight at the upstream, in the same run (issue #14, item 2).

An agent fleet is many slow streams at once, not back-to-back instant answers: the upstream
(``bench.upstream --pace-ms``) generates each answer over about half a second (default 25 text
deltas, one every 20 ms), and the load generator (``bench.streams_load`` in closed-loop mode)
keeps C streams open for ``--duration-s``: each slot sends its next request as soon as its
previous answer ends, on the same kept-alive connection (as Claude Code's HTTP client does;
``--new-connections`` opens one per stream instead). Per level, a direct phase then a gateway phase run back to back, so
the shared box's noise hits both alike; added latency is gateway minus direct, per quantile.

Per phase: time to last byte (TTLB, request — or connect — to ``message_stop``) p50/p99 over the
streams started after the ramp; the added per-token delay (each delta's arrival minus the
upstream's write stamp, every token of the phase), so added TTLB splits into the request's way
in (TTLB minus per-token) and the relay of the answer (per-token); errors, and the data plane's CPU share and event-loop lag (via
``bench.streams.run_phase``, which also reports how long the box kept the data plane waiting for
a CPU, and the load generator's own lag — a phase limited by the load generator says so). The
usage ledger must hold exactly one request per successful gateway stream.

Flags: ``--levels 1,64,256,1000``, ``--duration-s 10``, ``--ramp-s 2``, ``--pace-ms 20``,
``--events 25``, ``--json``, ``--profile`` (the data plane under ``bench.sampler``), ``--floor``.

``--floor`` adds a third phase per level, between the two: the same streams through
``bench.bare_relay``, the data plane's process shell (uvloop, Hypercorn as configured, the
aiohttp transport) relaying with no gateway in between. Its CPU per stream and its added latency
are the frameworks' floor: the share of the gateway's cost that Tollgate's own code does not add.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from bench.procs import Child, start_bare_relay
from bench.streams import Stack, emit, paced_parser, run_on_stack, run_phase
from bench.streams_report import footer


def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(c) for c in args.levels.split(",")]
    timeout_s = 10 * args.events * args.pace_ms / 1000 + 10  # per stream: later is an error
    result: dict[str, Any] = {
        "levels": levels,
        "pace_ms": args.pace_ms,
        "events": args.events,
        "duration_s": args.duration_s,
        "ramp_s": args.ramp_s,
        "keepalive": not args.new_connections,
    }

    def phases(work: Path, stack: Stack) -> int:
        done: list[dict[str, Any]] = []
        result["phases"] = done
        started: list[Child] = []
        try:
            bare = start_bare_relay(work, started, stack.upstream_port) if args.floor else None
            run_levels(work, stack, bare, done)
        finally:
            for child in started:
                child.stop()
        return sum(p["ok"] for p in done if p["target"] == "gateway")

    def run_levels(
        work: Path, stack: Stack, bare: tuple[Child, int] | None, done: list[dict[str, Any]]
    ) -> None:
        targets = stack.targets()
        if bare is not None:  # between direct and gateway, measured as the data plane would be
            direct = targets["direct"]
            targets = {"direct": direct, "bare": {**direct, "port": bare[1]}, **targets}
        for c in levels:
            for target, where in targets.items():
                plan = {
                    "host": "127.0.0.1",
                    "events": args.events,
                    "pace_s": args.pace_ms / 1000,
                    "ramp_s": args.ramp_s * min(1.0, c / 64),  # a few streams need no ramp
                    "duration_s": args.duration_s,
                    "keepalive": not args.new_connections,
                    "timeout_s": timeout_s,
                    "streams": c,
                    **where,
                }
                on = stack
                if target == "bare" and bare is not None:
                    on = dataclasses.replace(stack, dp=bare[0], dp_port=bare[1])
                done.append({"target": target, **run_phase(work, f"{target}-{c}", plan, on)})

    phase_s = args.ramp_s + args.duration_s + timeout_s + 5
    per_level = 3 if args.floor else 2
    return run_on_stack(result, args, 90 + per_level * len(levels) * phase_s, phases)


def render_floor(r: dict[str, Any]) -> list[str]:
    """The bare relay against the gateway, per level (with ``--floor``)."""
    by = {(p["streams"], p["target"]): p for p in r["phases"]}
    out = [
        "",
        "frameworks' floor (bench.bare_relay: the same process shell, no gateway) against the "
        "gateway; CPU per stream = the process's CPU seconds / streams answered",
        "",
        "| C | bare: added p50 / p99 | bare: added per-token p99 | bare CPU, per stream "
        "| gateway: added p50 / p99 | gateway: added per-token p99 | gateway CPU, per stream "
        "| gateway / bare CPU per stream |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in r["levels"]:
        d, b, g = (by.get((c, t)) for t in ("direct", "bare", "gateway"))
        if d is None or b is None or g is None:
            continue
        per = {
            name: p["dataplane"]["cpu_s"] * 1e3 / max(1, p["ok"])
            for name, p in (("bare", b), ("gateway", g))
        }
        dt, dd = d["ttlb_ms"], d["delay_ms"]
        cells = [str(c)]
        for p in (b, g):
            name = "bare" if p is b else "gateway"
            cells += [
                f"{p['ttlb_ms']['p50'] - dt['p50']:+.1f} / {p['ttlb_ms']['p99'] - dt['p99']:+.1f} ms",
                f"{p['delay_ms']['p99'] - dd['p99']:+.1f} ms",
                f"{p['dataplane']['cpu_share']:.0%}, {per[name]:.2f} ms",
            ]
        out.append("| " + " | ".join([*cells, f"{per['gateway'] / per['bare']:.2f}x"]) + " |")
    return out


def render(r: dict[str, Any]) -> str:
    by = {(p["streams"], p["target"]): p for p in r["phases"]}
    out = [
        f"paced concurrency sweep: answers of {r['events']} deltas every {r['pace_ms']:g} ms "
        f"(~{r['events'] * r['pace_ms']:.0f} ms), C streams kept open for {r['duration_s']:g} s "
        f"per phase ({'kept-alive connections' if r['keepalive'] else 'a connection per stream'}"
        "); TTLB = request (or connect) to message_stop, over streams started after the ramp",
        "",
        "| C | streams (direct / gw) | direct TTLB p50 / p99 | gateway TTLB p50 / p99 "
        "| added p50 / p99 | added per-token delay p50 / p99 | errors (direct / gw) | DP CPU | DP loop lag p99 / max "
        "| DP wait for CPU | loadgen lag p99 (direct / gw) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in r["levels"]:
        d, g = by.get((c, "direct")), by.get((c, "gateway"))
        if d is None or g is None:
            continue
        dt, gt, dp = d["ttlb_ms"], g["ttlb_ms"], g["dataplane"]
        dd, gd = d["delay_ms"], g["delay_ms"]  # every token: upstream's write to its arrival
        out.append(
            f"| {c} | {d['ttlb_streams']} / {g['ttlb_streams']} "
            f"| {dt['p50']:.1f} / {dt['p99']:.1f} ms | {gt['p50']:.1f} / {gt['p99']:.1f} ms "
            f"| {gt['p50'] - dt['p50']:+.1f} / {gt['p99'] - dt['p99']:+.1f} ms "
            f"| {gd['p50'] - dd['p50']:+.1f} / {gd['p99'] - dd['p99']:+.1f} ms "
            f"| {d['errors']} / {g['errors']} | {dp['cpu_share']:.0%} "
            f"| ≤{dp['lag_p99_ms']:g} / {dp['lag_max_ms']:.1f} ms"
            f"{' (/metrics timed out)' if dp['metrics_scrapes_timed_out'] else ''} "
            f"| {dp['runqueue_wait_share']:.0%} "
            f"| {d['lag_ms']['p99']:.1f} / {g['lag_ms']['p99']:.1f} ms |"
        )
    if any(p["target"] == "bare" for p in r["phases"]):
        out += render_floor(r)
    out += ["", *footer(r)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = paced_parser("bench.sweep", __doc__, events=25)
    parser.add_argument("--levels", default="1,64,256,1000", help="concurrent streams per level")
    parser.add_argument("--duration-s", type=float, default=10.0, help="per phase, after ramp")
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="a new connection per stream (default: the next request on the same one)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also through bench.bare_relay: the frameworks' floor (see the module docstring)",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.pace_ms <= 0 or args.duration_s <= 0:
        parser.error("--events must be >= 1, --pace-ms and --duration-s > 0")
    result = run(args)
    return emit(result, render(result), args.json)


if __name__ == "__main__":
    sys.exit(main())
